package logread

import (
	"bufio"
	"errors"
	"io"
	"os"
	"slices"
	"time"

	"aggregator/internal/sink"
)

// cursor reads one log's lines in order: its backups, oldest first, then
// its live file, which it keeps open to follow.
type cursor struct {
	log    log
	files  []string // still to read
	name   string   // being read
	rc     io.ReadCloser
	live   *os.File // the live file being read, for -f
	liveAt time.Time
	br     *bufio.Reader
	rec    record // the line at the head
	last   time.Time
	errs   func(name string, err error)
	part   []byte // a line not yet ended (the live file, while following)
}

func newCursor(l log, errs func(string, error)) (*cursor, error) {
	files, err := sink.Files(l.path)
	if err != nil {
		return nil, err
	}
	return &cursor{log: l, files: files, errs: errs}, nil
}

// open starts the next file; false when none is left.
func (c *cursor) open() bool {
	for len(c.files) > 0 {
		c.name, c.files = c.files[0], c.files[1:]
		rc, err := sink.Open(c.name)
		if err != nil {
			c.errs(c.name, err)
			continue
		}
		c.rc, c.br = rc, bufio.NewReaderSize(rc, 256<<10)
		c.live = nil
		if f, ok := rc.(*os.File); ok && c.name == c.log.path {
			c.live, c.liveAt = f, time.Now()
		}
		return true
	}
	return false
}

// next moves the head to the next line; false at the end of what is
// there. following keeps the live file open at its end.
func (c *cursor) next(following bool) bool {
	for {
		if c.br == nil && !c.open() {
			return false
		}
		line, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull { // a line longer than the buffer
			long := slices.Clone(line)
			for err == bufio.ErrBufferFull {
				line, err = c.br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(c.part) > 0 {
			line = append(c.part, line...)
			c.part = nil
		}
		switch {
		case err == nil:
			c.head(line[:len(line)-1])
			return true
		case errors.Is(err, io.EOF) && c.live != nil && following && len(c.files) == 0:
			c.part = slices.Clone(line) // the rest comes with the next write
			return false
		case errors.Is(err, io.EOF):
			c.closeFile()
			if len(line) > 0 { // a file that does not end with a whole line
				c.head(line)
				return true
			}
		default:
			c.errs(c.name, err)
			c.closeFile()
		}
	}
}

func (c *cursor) head(line []byte) {
	c.rec = parse(line, c.log.central)
	if c.rec.ok {
		c.last = c.rec.time
	}
}

// at is the head's time for merging: a line without one goes with the
// line before it.
func (c *cursor) at() time.Time {
	if c.rec.ok {
		return c.rec.time
	}
	return c.last
}

func (c *cursor) closeFile() {
	if c.rc != nil {
		c.rc.Close()
	}
	c.rc, c.br, c.live = nil, nil, nil
}

// rotated checks, at the end of the live file, whether the path names
// another file now (the daemon rotated it, or reopened it on SIGHUP);
// then the files after the one being read are queued: the backups
// rotated since (but the first, which is the one being read, perhaps
// compressed by now) and the new live file. The one being read is read
// to its end first: the daemon finishes a file before it rotates it.
func (c *cursor) rotated() error {
	if c.live == nil {
		if c.br == nil && len(c.files) == 0 {
			if _, err := os.Stat(c.log.path); err == nil {
				c.files = []string{c.log.path} // the live file appeared
			}
		}
		return nil
	}
	now, err := os.Stat(c.log.path)
	if err != nil {
		return nil // between a rename and the new file: next time
	}
	ours, err := c.live.Stat()
	if err != nil {
		return err
	}
	if os.SameFile(now, ours) {
		return nil
	}
	files, err := sink.Files(c.log.path)
	if err != nil {
		return err
	}
	var after []string
	skipped := false
	for _, name := range files {
		if name == c.log.path {
			after = append(after, name)
			continue
		}
		at, err := sink.BackupTime(name)
		if err != nil || at.Before(c.liveAt.Add(-time.Millisecond)) {
			continue // rotated before the one being read was opened
		}
		if info, err := os.Stat(name); err == nil && os.SameFile(info, ours) {
			skipped = true
			continue
		}
		if !skipped { // the one being read, compressed since
			skipped = true
			continue
		}
		after = append(after, name)
	}
	c.files = after
	return nil
}
