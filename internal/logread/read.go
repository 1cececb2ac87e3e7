// Package logread reads back what the daemon wrote: the files of one log
// or many (backups, gzip or zstd, and the live file), merged by time,
// filtered by time, source and content, printed as stored, as JSON, as
// the producer's messages or as exact frames, and followed as the daemon
// writes and rotates.
package logread

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"time"
	"unicode/utf8"

	"aggregator/internal/sink"
)

// Output is how a record is printed.
type Output int

const (
	Text    Output = iota // the line as stored
	JSON                  // one object a line, AGG_FORMAT=json's schema
	Message               // the message as the producer sent it
	Raw                   // every frame's exact bytes, length-prefixed
)

// Options select and print the records.
type Options struct {
	Since, Until time.Time // zero: open
	Topic        []byte    // prefix of the topic
	Endpoint     string
	Edge         string
	Grep         []byte // fixed substring of the message
	Last         int    // only the last N; 0: all
	Output       Output
	Follow       bool
	Poll         time.Duration // how often a followed log is looked at
}

// Result counts what was read.
type Result struct {
	Records, Unparsed int
	FileErrors        int
}

// Read prints the records of logs (arguments as the command takes them)
// to out, errors naming their file to errs. With Follow it returns when
// ctx is done.
func Read(ctx context.Context, args []string, opt Options, out io.Writer, errs io.Writer) (Result, error) {
	var res Result
	logs, err := find(args)
	if err != nil {
		return res, err
	}
	report := func(name string, err error) {
		res.FileErrors++
		fmt.Fprintf(errs, "aggregator read: %s: %v\n", name, err)
	}
	var cursors []*cursor
	for _, l := range logs {
		c, err := newCursor(l, report)
		if err != nil {
			report(l.path, err)
			continue
		}
		cursors = append(cursors, c)
	}
	for _, c := range cursors {
		c.files = skipOutside(c.files, opt.Since, opt.Until)
		c.needTime = len(cursors) > 1 // a window compares stamps itself (printer.inWindow)
		if !opt.Follow {
			// Whole files, decompressed ahead in parallel: the cores
			// share the decompression, and a search jumps from one
			// occurrence to the next instead of looking at every line.
			c.whole, c.ahead = true, prefetch(c.files, runtime.GOMAXPROCS(0)+1, opt.Since, opt.Until)
			c.files = nil
			// A needle that text and JSON lines store as it is lets a
			// search jump to its occurrences (and to base64 fields, which
			// hide it), each then checked by match.
			if opt.Grep != nil && utf8.Valid(opt.Grep) && !bytes.ContainsAny(opt.Grep, "\\\"") && !hasControl(opt.Grep) {
				c.needle = opt.Grep
			}
		}
	}
	w := bufio.NewWriterSize(out, 256<<10)
	defer w.Flush()
	p := printer{opt: opt, w: w, res: &res}
	// Stamps have microseconds: a bound between two is rounded up, which
	// keeps and drops exactly the same stamps.
	ceil := func(t time.Time) []byte {
		u := t.Truncate(time.Microsecond)
		if u.Before(t) {
			u = u.Add(time.Microsecond)
		}
		return []byte(u.UTC().Format(utcStamp))
	}
	if !opt.Since.IsZero() {
		p.since = ceil(opt.Since)
	}
	if !opt.Until.IsZero() {
		p.until = ceil(opt.Until)
	}
	if len(opt.Grep) > 0 {
		p.grepText = sink.AppendEscaped(nil, opt.Grep)
	}
	var ring [][]byte // the last N, with -n
	var ringBuf bytes.Buffer
	ringW := bufio.NewWriter(&ringBuf)
	emit := func(c *cursor) {
		if !p.match(&c.rec) {
			return
		}
		if opt.Last > 0 {
			// Printed into the oldest slot's memory once the ring is full.
			var slot []byte
			if len(ring) == opt.Last {
				slot, ring = ring[0][:0], ring[1:]
			}
			ringBuf.Reset()
			p.w = ringW
			p.print(&c.rec)
			ringW.Flush()
			p.w = w
			ring = append(ring, append(slot, ringBuf.Bytes()...))
			return
		}
		p.print(&c.rec)
	}

	// What is there now: a k-way merge by time.
	h := &byTime{}
	for _, c := range cursors {
		if c.next(opt.Follow) {
			heap.Push(h, c)
		}
	}
	for h.Len() > 0 {
		c := (*h)[0]
		emit(c)
		if c.next(opt.Follow) {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	for _, b := range ring {
		w.Write(b)
	}
	ring, opt.Last, p.opt.Last = nil, 0, 0
	if !opt.Follow {
		return res, nil
	}

	// Then what comes: each log as it grows, across rotations.
	poll := opt.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		w.Flush()
		select {
		case <-ctx.Done():
			return res, nil
		case <-tick.C:
		}
		for _, c := range cursors {
			for c.drainNext() {
				emit(c)
			}
			for {
				for c.next(true) {
					emit(c)
				}
				before := len(c.files)
				if err := c.rotated(); err != nil {
					report(c.log.path, err)
				}
				if len(c.files) == before {
					break
				}
			}
		}
	}
}

// skipOutside leaves out the compressed backups whose lines' times all
// miss the window [since, until): each such backup ends with the lowest
// and highest time of its lines (see sink.BackupSpan), true whatever
// their order, so a clock that stepped back loses nothing. Backups
// without it are read.
func skipOutside(files []string, since, until time.Time) []string {
	if since.IsZero() && until.IsZero() {
		return files
	}
	kept := files[:0:0]
	for _, name := range files {
		low, high, ok := sink.BackupSpan(name)
		if ok && ((!since.IsZero() && high.Before(since)) || (!until.IsZero() && !low.Before(until))) {
			continue
		}
		kept = append(kept, name)
	}
	return kept
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// byTime is a heap of cursors by their head's time; equal times keep the
// order of the arguments.
type byTime []*cursor

func (h byTime) Len() int           { return len(h) }
func (h byTime) Less(i, j int) bool { return h[i].at().Before(h[j].at()) }
func (h byTime) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *byTime) Push(x any)        { *h = append(*h, x.(*cursor)) }
func (h *byTime) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// printer filters and prints records.
type printer struct {
	opt      Options
	w        *bufio.Writer
	res      *Result
	grepText []byte // Grep as a text line stores it
	scratch  []byte
	// since and until as a UTC stamp of the daemon's stores them: a
	// stamp of that form compares as bytes, with no parsing.
	since, until []byte
}

// utcStamp is the form of the daemon's text stamps in UTC.
const utcStamp = "2006-01-02T15:04:05.000000Z07:00"

// inWindow reports whether a record's time is in [Since, Until).
func (p *printer) inWindow(r *record) bool {
	if p.since == nil && p.until == nil {
		return true
	}
	if st := r.stamp(); !r.json && len(st) == len(utcStamp)-5 && st[len(st)-1] == 'Z' {
		return (p.since == nil || bytes.Compare(st, p.since) >= 0) && (p.until == nil || bytes.Compare(st, p.until) < 0)
	}
	t := r.time
	if !r.json && t.IsZero() {
		ns, ok := sink.LineTime(r.line)
		if !ok {
			return false
		}
		t = time.Unix(0, ns)
	}
	return (p.opt.Since.IsZero() || !t.Before(p.opt.Since)) && (p.opt.Until.IsZero() || t.Before(p.opt.Until))
}

// filtered reports whether any filter is set.
func (p *printer) filtered() bool {
	o := p.opt
	return !o.Since.IsZero() || !o.Until.IsZero() || o.Topic != nil || o.Endpoint != "" || o.Edge != "" || o.Grep != nil
}

// match applies the filters. A line not in the daemon's format is
// counted, and passed through when nothing filters.
func (p *printer) match(r *record) bool {
	if !r.ok {
		p.res.Unparsed++
		return !p.filtered()
	}
	o := p.opt
	switch {
	case !p.inWindow(r):
		return false
	case o.Edge != "" && r.edge != o.Edge:
		return false
	case o.Endpoint != "" && (!r.json || r.fields.Endpoint != o.Endpoint):
		return false
	}
	if o.Topic != nil {
		topic := r.topic()
		if !r.json && bytes.IndexByte(topic, '\\') >= 0 {
			topic, _ = sink.Unescape(topic)
		}
		if !bytes.HasPrefix(topic, o.Topic) {
			return false
		}
	}
	if o.Grep != nil {
		if r.json {
			if !bytes.Contains(r.message(), o.Grep) && !bytes.Contains(r.topic(), o.Grep) {
				return false
			}
		} else if !bytes.Contains(r.body, p.grepText) {
			return false
		}
	}
	return true
}

func (p *printer) print(r *record) {
	p.res.Records++
	switch {
	case p.opt.Output == Text:
		p.w.Write(r.line)
		p.w.WriteByte('\n')
	case !r.ok: // passed through as it is, in every form
		if p.opt.Output == JSON {
			p.scratch = sink.AppendJSONField(append(p.scratch[:0], '{'), "unparsed", r.line)
			p.w.Write(append(p.scratch, '}', '\n'))
			return
		}
		p.w.Write(r.line)
		p.w.WriteByte('\n')
	case p.opt.Output == JSON && r.json:
		p.w.Write(r.line)
		p.w.WriteByte('\n')
	case p.opt.Output == JSON:
		p.printJSON(r)
	case p.opt.Output == Message:
		frames, err := r.frames()
		if err != nil {
			p.w.Write(r.line)
			p.w.WriteByte('\n')
			return
		}
		if len(frames) > 1 {
			frames = frames[1:]
		}
		p.w.Write(bytes.Join(frames, []byte{'\t'}))
		p.w.WriteByte('\n')
	case p.opt.Output == Raw:
		frames, err := r.frames()
		if err != nil {
			frames = [][]byte{r.line}
		}
		p.w.Write(r.stamp())
		p.w.WriteByte(' ')
		p.w.WriteString(strconv.Itoa(len(frames)))
		p.w.WriteByte('\n')
		for _, f := range frames {
			p.w.WriteString(strconv.Itoa(len(f)))
			p.w.WriteByte('\n')
			p.w.Write(f)
			p.w.WriteByte('\n')
		}
	}
}

// printJSON prints a text line in AGG_FORMAT=json's schema; the time as
// the line stores it, no endpoint or peer (a text line has neither).
func (p *printer) printJSON(r *record) {
	frames, err := r.frames()
	if err != nil {
		p.scratch = sink.AppendJSONField(append(p.scratch[:0], '{'), "unparsed", r.line)
		p.w.Write(append(p.scratch, '}', '\n'))
		return
	}
	var topic, msg []byte
	if len(frames) > 1 {
		topic, msg = frames[0], bytes.Join(frames[1:], []byte{'\t'})
	} else {
		msg = frames[0]
	}
	b := append(p.scratch[:0], '{')
	if r.edge != "" {
		b = sink.AppendJSONField(b, "edge", []byte(r.edge))
		b = append(b, ',')
	}
	b = sink.AppendJSONField(b, "time", r.stamp())
	b = append(b, `,"endpoint":"","peer":"",`...)
	b = sink.AppendJSONField(b, "topic", topic)
	b = append(b, ',')
	b = sink.AppendJSONField(b, "message", msg)
	p.scratch = append(b, '}', '\n')
	p.w.Write(p.scratch)
}
