package forward

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChunksAreWholeLines: chunks end at a newline, respect their limits
// but always hold at least one line, leave a partial line for later, and
// pick it up once the writer has finished it.
func TestChunksAreWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subscriber.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("one\ntwo\n" + strings.Repeat("x", 50) + "\nparti")
	seg, err := openSegment(path, "id", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.close()
	buf, lines, err := seg.chunk(nil, 10, 100)
	if err != nil || lines != 2 || string(buf) != "one\ntwo\n" {
		t.Fatalf("first chunk %q (%d lines), %v", buf, lines, err)
	}
	buf, lines, _ = seg.chunk(buf[:0], 10, 100) // one line longer than the limit still goes
	if lines != 1 || len(buf) != 51 {
		t.Fatalf("long line: %q (%d lines)", buf, lines)
	}
	if buf, lines, _ = seg.chunk(buf[:0], 10, 100); lines != 0 || len(buf) != 0 {
		t.Fatalf("partial line returned: %q", buf)
	}
	f.WriteString("al\n")
	if buf, lines, _ = seg.chunk(buf[:0], 10, 100); lines != 1 || string(buf) != "partial\n" {
		t.Fatalf("finished line: %q (%d lines)", buf, lines)
	}
	if seg.offset != int64(len("one\ntwo\n")+51+len("partial\n")) {
		t.Fatalf("offset %d", seg.offset)
	}
}

// TestSegmentIDSurvivesCompression: a file keeps its ID when it is
// renamed to a backup and gzipped, and a file with no whole line has none.
func TestSegmentIDSurvivesCompression(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "subscriber-2026-11-30T05-00-00.000.log")
	os.WriteFile(plain, []byte("2026-11-30T05:00:00.000001Z first\nsecond\n"), 0o640)
	id1, ok, err := segmentID(plain)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	gz := plain + ".gz"
	if err := gzipFile(plain, gz); err != nil {
		t.Fatal(err)
	}
	id2, ok, err := segmentID(gz)
	if err != nil || !ok || id2 != id1 {
		t.Fatalf("gzipped: %q %v %v, want %q", id2, ok, err, id1)
	}
	empty := filepath.Join(dir, "subscriber.log")
	os.WriteFile(empty, []byte("no newline yet"), 0o640)
	if _, ok, _ := segmentID(empty); ok {
		t.Fatal("a file with no whole line has an ID")
	}
}

// gzipFile compresses as the daemon's compressor would.
func gzipFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(dst)
	if _, err := io.Copy(zw, src); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return dst.Close()
}
