package sink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBackupSpan: a compressed backup ends with the lowest and highest
// time of its lines, in whatever order they are (the clock stepped back
// in the middle), and decoders read it as before: ours, and the zstd and
// gzip commands.
func TestBackupSpan(t *testing.T) {
	lines := "2026-12-03T10:00:00.000001Z a\n" +
		"2026-12-03T10:59:59.999999Z b\n" +
		"2026-12-03T09:30:00.5+01:00 c, the clock stepped back an hour\n" +
		`{"edge":"e","time":"2026-12-03T11:00:00Z","message":"d"}` + "\n" +
		"not a line of the daemon\n"
	low := time.Date(2026, 12, 3, 8, 30, 0, 500_000_000, time.UTC)
	high := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		codec Codec
		cmd   []string
	}{{Zstd, []string{"zstd", "-dc"}}, {Gzip, []string{"gzip", "-dc"}}} {
		dir := t.TempDir()
		live := filepath.Join(dir, "subscriber.log")
		backup := filepath.Join(dir, "subscriber-2026-12-03T11-00-00.000.log")
		if err := os.WriteFile(backup, []byte(lines), 0o644); err != nil {
			t.Fatal(err)
		}
		c := newCompressor(live, tc.codec, 0, 0, nil, NewMetrics(prometheus.NewRegistry(), prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped_total"}, []string{"reason"})), slog.New(slog.DiscardHandler))
		if err := c.compress(context.Background(), backup); err != nil {
			t.Fatal(err)
		}
		name := backup + tc.codec.suffix()
		lo, hi, ok := BackupSpan(name)
		if !ok || !lo.Equal(low) || !hi.Equal(high) {
			t.Errorf("%s: span %v..%v (%v), want %v..%v", tc.codec, lo, hi, ok, low, high)
		}
		rc, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != lines {
			t.Errorf("%s: read back %q, %v", tc.codec, got, err)
		}
		if path, err := exec.LookPath(tc.cmd[0]); err == nil {
			out, err := exec.Command(path, append(tc.cmd[1:], name)...).Output()
			if err != nil || string(out) != lines {
				t.Errorf("%s: %v gave %q, %v", tc.codec, tc.cmd, out, err)
			}
		}
	}
	if _, _, ok := BackupSpan("/nonexistent.zst"); ok {
		t.Error("a span for a file that is not there")
	}
}

// TestOpenWindowReadsOnlyItsFrames: a zstd backup of 12 MB is written in
// frames of 4 MB; a window reads only the frames whose lines' times it
// meets, and finds every line inside it, also those of a frame where the
// clock stepped back into the window.
func TestOpenWindowReadsOnlyItsFrames(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "subscriber.log")
	backup := filepath.Join(dir, "subscriber-2026-12-03T12-00-00.000.log")
	base := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var data []byte
	pad := strings.Repeat("p", 100)
	const n = 100_000 // about 13 MB: 4 frames
	for i := range n {
		t := base.Add(time.Duration(i) * 50 * time.Millisecond)
		if i == n-10 {
			t = base.Add(time.Minute) // the clock stepped back, near the end
		}
		data = fmt.Appendf(data, "%s line %d %s\n", t.Format("2006-01-02T15:04:05.000000Z07:00"), i, pad)
	}
	if err := os.WriteFile(backup, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCompressor(live, Zstd, 0, 0, nil, NewMetrics(prometheus.NewRegistry(), prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped_total"}, []string{"reason"})), slog.New(slog.DiscardHandler))
	if err := c.compress(context.Background(), backup); err != nil {
		t.Fatal(err)
	}
	name := backup + ".zst"
	f, _ := os.Open(name)
	_, _, frames, ok := readFrameIndex(f)
	f.Close()
	if !ok || len(frames) < 3 {
		t.Fatalf("frame index: %v, %d frames", ok, len(frames))
	}
	// The first minute: lines 0-1199 of the first frame, and line n-10
	// of the last.
	since, until := base, base.Add(time.Minute+time.Microsecond)
	rc, err := OpenWindow(name, since, until)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) >= len(data)/2 {
		t.Errorf("read %d bytes of %d for a window in the first and last frames", len(got), len(data))
	}
	for _, want := range []string{" line 0 ", " line 1199 ", fmt.Sprintf(" line %d ", n-10)} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the window's line%q is missing", want)
		}
	}
	if rc, err := Open(name); err == nil { // the whole file still reads whole
		all, _ := io.ReadAll(rc)
		rc.Close()
		if string(all) != string(data) {
			t.Errorf("read whole: %d bytes, want %d", len(all), len(data))
		}
	}
	t.Logf("%d frames; the window read %d of %d bytes", len(frames), len(got), len(data))
}
