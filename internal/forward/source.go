package forward

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"aggregator/internal/sink"
)

// The forwarder reads the log's files themselves, oldest backup first and
// the live file last: they are its buffer, as large as the disk, and they
// survive a NATS outage and a restart of the daemon.
//
// A file is known by the hash of its first line (its segment ID), which
// stays the same when the live file is renamed to a backup and when the
// backup is gzipped; a place in the log is a segment ID and a byte offset
// into its uncompressed lines. The JetStream message ID of a chunk is made
// of the edge, the segment ID and the offset, so a chunk sent again after
// a restart or a lost acknowledgement is stored once.

// firstLineMax bounds how much of a file its ID is taken from.
const firstLineMax = 4096

// segmentID identifies a file of the log by its first line. It reports
// ok=false for a file that has no whole line yet.
func segmentID(name string) (id string, ok bool, err error) {
	rc, err := sink.Open(name)
	if err != nil {
		return "", false, err
	}
	defer rc.Close()
	buf := make([]byte, firstLineMax)
	n, err := io.ReadFull(rc, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", false, err
	}
	line := buf[:n]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i+1]
	} else if n < firstLineMax {
		return "", false, nil
	}
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:8]), true, nil
}

// segment is one file of the log being read.
type segment struct {
	name   string
	id     string
	offset int64 // of the next byte to read, in the uncompressed lines
	r      *bufio.Reader
	closer io.Closer
	file   *os.File // the live file, or a backup not yet gzipped: to see whether it is still the live one
}

// sync makes the file's lines durable (fdatasync through the reading
// descriptor syncs the file, whoever wrote it); a compressed backup was
// synced when it was made.
func (s *segment) sync() error {
	if s.file == nil {
		return nil
	}
	if err := syscall.Fdatasync(int(s.file.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", s.name, err)
	}
	return nil
}

// openSegment opens name and skips to offset.
func openSegment(name, id string, offset int64) (*segment, error) {
	rc, err := sink.Open(name)
	if err != nil {
		return nil, err
	}
	s := &segment{name: name, id: id, closer: rc, r: bufio.NewReaderSize(rc, 256<<10)}
	if f, ok := rc.(*os.File); ok {
		s.file = f
	}
	if offset > 0 {
		if s.file != nil {
			if _, err := s.file.Seek(offset, io.SeekStart); err != nil {
				rc.Close()
				return nil, err
			}
			s.r.Reset(s.file)
		} else if _, err := io.CopyN(io.Discard, s.r, offset); err != nil {
			rc.Close()
			return nil, fmt.Errorf("%s: skip to %d: %w", name, offset, err)
		}
	}
	s.offset = offset
	return s, nil
}

// chunk appends whole lines to buf, at most maxBytes (but at least one
// line) and maxLines of them. It appends nothing when no whole line is
// there yet; a partial line at the end stays for the next call.
func (s *segment) chunk(buf []byte, maxBytes, maxLines int) ([]byte, int, error) {
	start := len(buf)
	lines := 0
	for lines < maxLines {
		peek, err := s.r.Peek(1)
		if len(peek) == 0 {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return buf, lines, err
		}
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the reader's buffer: take it whole.
			var long []byte
			long = append(long, line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = s.r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil { // a partial line: the writer has not finished it
			if errors.Is(err, io.EOF) {
				s.unread(line)
				return buf, lines, nil
			}
			return buf, lines, err
		}
		if lines > 0 && len(buf)-start+len(line) > maxBytes {
			s.unread(line)
			return buf, lines, nil
		}
		buf = append(buf, line...)
		s.offset += int64(len(line))
		lines++
	}
	return buf, lines, nil
}

// unread puts back a partial line read at the end of the file: the next
// read starts again at its first byte.
func (s *segment) unread(partial []byte) {
	if len(partial) == 0 {
		return
	}
	if s.file != nil {
		s.file.Seek(s.offset, io.SeekStart)
		s.r.Reset(s.file)
		return
	}
	// A gzipped backup is complete: a partial last line cannot happen.
	s.r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(append([]byte(nil), partial...)), s.r), 256<<10)
}

// rotatedAway reports whether path no longer names this segment's file:
// the live file was renamed to a backup, and a new live file begun.
func (s *segment) rotatedAway(path string) bool {
	if s.file == nil {
		return true // a gzipped backup is never the live file
	}
	a, err1 := s.file.Stat()
	b, err2 := os.Stat(path)
	return err1 != nil || err2 != nil || !os.SameFile(a, b)
}

// rest appends everything left in the file to buf: the last line of a
// complete file that does not end with a newline.
func (s *segment) rest(buf []byte) ([]byte, error) {
	start := len(buf)
	buf, err := appendAll(buf, s.r)
	s.offset += int64(len(buf) - start)
	return buf, err
}

func appendAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// skip passes over n bytes: a line not forwarded.
func (s *segment) skip(n int64) error {
	if _, err := io.CopyN(io.Discard, s.r, n); err != nil {
		return fmt.Errorf("%s: skip %d bytes at %d: %w", s.name, n, s.offset, err)
	}
	s.offset += n
	return nil
}

// more reports whether bytes are there to read beyond what was read.
func (s *segment) more() bool {
	b, _ := s.r.Peek(1)
	return len(b) > 0
}

func (s *segment) close() {
	if s.closer != nil {
		s.closer.Close()
	}
}

// seek moves to offset in the same file: the live file may have been
// renamed since it was opened, so a plain file is never opened again by
// name.
func (s *segment) seek(offset int64) error {
	if s.file != nil {
		if _, err := s.file.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		s.r.Reset(s.file)
		s.offset = offset
		return nil
	}
	reopened, err := openSegment(s.name, s.id, offset)
	if err != nil {
		return err
	}
	s.close()
	*s = *reopened
	return nil
}

// exactly reads the next n bytes: a chunk sent before, read again.
func (s *segment) exactly(buf []byte, n int64) ([]byte, error) {
	buf = append(buf[:0], make([]byte, n)...)
	if _, err := io.ReadFull(s.r, buf); err != nil {
		return nil, fmt.Errorf("%s: read %d bytes at %d: %w", s.name, n, s.offset, err)
	}
	s.offset += n
	return buf, nil
}
