package logread

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
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

	// Whole files (when not following): each file's lines decompressed
	// into memory ahead of the reading, a few files in parallel, and
	// searched as one buffer.
	whole    bool
	ahead    chan fileData
	buf      []byte
	pos      int
	needle   []byte   // jump from one occurrence to the next; nil: every line
	b64      int      // where the next base64 field is in buf; -1: none; below pos: look again
	block    *[]byte  // buf's block, back to the pool once read
	drain    *drainer // a file renamed away by someone else, read on for a while
	needTime bool     // lines are compared by time (a window, or a merge)
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

// fileData is a block of whole lines of a file, or why the file could
// not be read further; last marks a file's last block.
type fileData struct {
	name string
	data []byte
	err  error
	last bool
}

// blockSize is how much of a file a block holds: large enough that the
// search runs over long buffers, small enough to stay in the CPU's cache.
const blockSize = 1 << 20

var blocks = sync.Pool{New: func() any { b := make([]byte, 0, blockSize); return &b }}

// prefetch reads the files in blocks of whole lines, in order, up to
// depth files at once, each decompressed by its own goroutine; of a zstd
// backup, only the frames that may hold lines of [since, until).
func prefetch(files []string, depth int, since, until time.Time) chan fileData {
	out := make(chan fileData, 4)
	pending := make(chan chan fileData, depth)
	go func() {
		defer close(pending)
		for _, name := range files {
			one := make(chan fileData, 4)
			pending <- one
			go stream(name, since, until, one)
		}
	}()
	go func() {
		defer close(out)
		for one := range pending {
			for fd := range one {
				out <- fd
			}
		}
	}()
	return out
}

// stream sends a file's lines in blocks that end with a newline; a
// file's end without one is a block of its own.
func stream(name string, since, until time.Time, out chan<- fileData) {
	defer close(out)
	rc, err := sink.OpenWindow(name, since, until)
	if err != nil {
		out <- fileData{name: name, err: err, last: true}
		return
	}
	defer rc.Close()
	var carry []byte
	for {
		bp := blocks.Get().(*[]byte)
		buf := append((*bp)[:0], carry...)
		if cap(buf) < len(carry)+blockSize/2 {
			buf = append(make([]byte, 0, 2*len(carry)+blockSize), carry...)
		}
		// Not io.ReadFull: its ErrUnexpectedEOF for a short last block
		// would hide the decompressor's for a cut file.
		var err error
		for len(buf) < cap(buf) && err == nil {
			var n int
			n, err = rc.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
		}
		end := err != nil
		if errors.Is(err, io.EOF) {
			err = nil
		}
		cut := len(buf)
		if !end {
			cut = bytes.LastIndexByte(buf, '\n') + 1
		}
		carry = append(carry[:0], buf[cut:]...)
		out <- fileData{name: name, data: buf[:cut], err: err, last: end}
		if end {
			return
		}
	}
}

// base64Field marks a JSON field whose bytes were not UTF-8: a search
// cannot see into it, so its line is checked whole.
var base64Field = []byte(`_base64":"`)

// nextWhole is next for whole files, read in blocks.
func (c *cursor) nextWhole() bool {
	for {
		if c.buf == nil {
			if c.block != nil {
				blocks.Put(c.block)
				c.block = nil
			}
			fd, ok := <-c.ahead
			if !ok {
				return false
			}
			c.name = fd.name
			if fd.err != nil {
				c.errs(fd.name, fd.err)
				// What came before the damage is read; a cut line is not.
				i := bytes.LastIndexByte(fd.data, '\n')
				fd.data = fd.data[:i+1]
			}
			if len(fd.data) == 0 {
				continue
			}
			c.block = &fd.data
			c.buf, c.pos, c.b64 = fd.data, 0, 0
			if c.needle != nil {
				c.b64 = -2 // not looked for yet
			}
		}
		start := c.pos
		if c.needle != nil {
			i := bytes.Index(c.buf[c.pos:], c.needle)
			if c.b64 != -1 && c.b64 < c.pos { // the next base64 field, once per field
				if j := bytes.Index(c.buf[c.pos:], base64Field); j >= 0 {
					c.b64 = c.pos + j
				} else {
					c.b64 = -1
				}
			}
			if c.b64 >= 0 && (i < 0 || c.b64-c.pos < i) {
				i = c.b64 - c.pos
			}
			if i < 0 {
				c.buf = nil
				continue
			}
			start = bytes.LastIndexByte(c.buf[:c.pos+i], '\n') + 1
		}
		if start >= len(c.buf) {
			c.buf = nil
			continue
		}
		end := bytes.IndexByte(c.buf[start:], '\n')
		if end < 0 { // a file that does not end with a whole line
			c.head(c.buf[start:])
			c.buf = nil
			return true
		}
		c.pos = start + end + 1
		c.head(c.buf[start : start+end])
		return true
	}
}

func (c *cursor) next(following bool) bool {
	if c.whole {
		return c.nextWhole()
	}
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
	if c.needTime {
		c.rec = parse(line, c.log.central)
	} else {
		c.rec = parseUntimed(line, c.log.central)
	}
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
	if c.renamedAway(files, ours) {
		// Renamed by someone else (logrotate, then SIGHUP): the daemon
		// may write to it until it reopens, so it is read on beside the
		// new live file until it has been quiet for a while.
		c.drain = &drainer{f: c.live, br: c.br, part: c.part, grew: time.Now()}
		c.rc, c.br, c.live, c.part = nil, nil, nil, nil
		c.files = []string{c.log.path}
		return nil
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

// renamedAway reports whether the file being read was renamed to a name
// that is not one of the daemon's backups: it still has a name, and no
// backup is it.
func (c *cursor) renamedAway(files []string, ours os.FileInfo) bool {
	if st, ok := ours.Sys().(*syscall.Stat_t); !ok || st.Nlink == 0 {
		return false // removed (compressed and deleted): the daemon's
	}
	for _, name := range files {
		if info, err := os.Stat(name); err == nil && os.SameFile(info, ours) {
			return false
		}
	}
	return true
}

// drainer reads a file renamed away while the daemon may still write to
// it, until it has been quiet for drainQuiet.
type drainer struct {
	f    *os.File
	br   *bufio.Reader
	part []byte
	grew time.Time
}

const drainQuiet = 2 * time.Second

// drainNext moves the head to the next line of a renamed-away file; false
// when it has none now (and it is closed once quiet long enough).
func (c *cursor) drainNext() bool {
	d := c.drain
	if d == nil {
		return false
	}
	line, err := d.br.ReadSlice('\n')
	if len(line) > 0 {
		d.grew = time.Now()
	}
	if err == nil {
		line = append(d.part, line...)
		d.part = nil
		c.head(line[:len(line)-1])
		return true
	}
	d.part = append(d.part, line...)
	if time.Since(d.grew) > drainQuiet {
		d.f.Close()
		c.drain = nil
	}
	return false
}
