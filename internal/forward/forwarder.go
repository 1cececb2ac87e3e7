// Package forward sends the lines the daemon writes on to a NATS
// JetStream stream: in order, in chunks of whole lines, each chunk
// acknowledged by JetStream or sent again, from the log's files
// themselves, so that forwarding survives a NATS outage and a restart.
//
// Each log file (the one file, or each file of a file per source) is a
// lane with its own checkpoint next to it; a few workers forward the lanes
// that have lines waiting, each lane's windows in order, so that a
// thousand files need a few open descriptors, not a thousand.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"aggregator/internal/natsconn"
	"aggregator/internal/route"
	"aggregator/internal/sink"
	"aggregator/internal/subjects"
)

// Options say where lines go and how to get there.
type Options struct {
	natsconn.Options // the servers and the login
	Stream           string
	Subject          string
	Replicas         int // of a stream the forwarder creates
	Edge             string
	// Partitions of a stream the forwarder creates (0: none); a stream
	// that exists with others is an error.
	Partitions int

	// Log is the live file; the checkpoint is kept next to it. With
	// Route, Log is a template and each of its files is forwarded.
	Log   string
	Route *route.Template
}

// Chunking and the window: a window of at most windowChunks chunks is
// planned (its boundaries saved in the checkpoint), published without
// waiting, and acknowledged before the next. A chunk sent again after a
// failure or a restart then has exactly the boundaries, and so the message
// ID, it had the first time.
const (
	chunkBytes     = 64 << 10
	chunkLines     = 1000
	windowChunks   = 64
	ackWait        = 10 * time.Second
	retryMin       = 100 * time.Millisecond
	retryMax       = 5 * time.Second
	duplicates     = 2 * time.Minute // the duplicate window of a stream the forwarder creates
	checkpointName = ".forwarded"    // appended to the live file's name
	// workers is how many lanes are forwarded at once; each holds one
	// file open while it has lines to send.
	workers = 4
)

// Forwarder owns the NATS connection and the lanes.
type Forwarder struct {
	opt Options
	m   *Metrics
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream
	// layout is the stream's subjects; subject is this edge's.
	layout  subjects.Layout
	subject string

	failure   atomic.Pointer[string] // why forwarding fails now; nil while it works
	retryWait atomic.Int64           // the next back-off after a failure; reset by a success
	streamOK  atomic.Bool            // the stream was found or created since the last failure

	mu      sync.Mutex
	lanes   map[string]*lane
	queue   []*lane
	signal  chan struct{} // a lane was queued
	started bool          // Run has listed the files: lanes are known
}

// lane is one log file's forwarding.
type lane struct {
	log, checkFile string
	caughtUp       atomic.Int64 // Unix ns when everything written was last acknowledged
	behind         atomic.Bool  // lines are written and not yet acknowledged
	readFrom       atomic.Int64 // Unix ns: backups rotated since are not yet forwarded (see Unforwarded)
	lag            atomic.Int64 // bytes not yet acknowledged, as of the last window planned
	cp             *checkpoint  // loaded at the lane's first run; owned by the worker running it

	// Under Forwarder.mu: queued to a worker, being forwarded, written
	// to since the run started (run it again), waiting out a failure.
	queued, running, again, backoff bool
}

// position is a place in the log: a segment and an offset in it.
type position struct {
	Segment string `json:"segment"`
	File    string `json:"file"` // where the segment was last seen; a hint
	Offset  int64  `json:"offset"`
}

// planned is a chunk of a window: its segment and byte range.
type planned struct {
	Start, End int64
	Lines      int
	Skip       bool `json:",omitempty"` // one line longer than NATS takes: counted, not sent
}

// checkpoint is what survives a restart: what JetStream acknowledged, and
// the window in flight.
type checkpoint struct {
	Acked  position  `json:"acked"`
	Window []planned `json:"window,omitempty"`
}

// New connects (retrying in the background: a NATS server that is down
// at start is not an error) and returns the forwarder.
func New(opt Options, m *Metrics, log *slog.Logger) (*Forwarder, error) {
	f := &Forwarder{opt: opt, m: m, log: log, lanes: map[string]*lane{}, signal: make(chan struct{}, 1),
		layout: subjects.Layout{Prefix: opt.Subject, Partitions: opt.Partitions}}
	f.subject = f.layout.Edge(opt.Edge)
	var err error
	if f.nc, err = opt.Connect("aggregator edge "+opt.Edge, f.fail); err != nil {
		return nil, err
	}
	if f.js, err = jetstream.New(f.nc, jetstream.WithPublishAsyncMaxPending(workers*windowChunks),
		// An acknowledgement lost without a reconnect must fail its
		// future, not hold a place among the pending ones for ever.
		jetstream.WithPublishAsyncTimeout(ackWait)); err != nil {
		f.nc.Close()
		return nil, err
	}
	return f, nil
}

// Close closes the connection of a forwarder that was never run.
func (f *Forwarder) Close() { f.nc.Close() }

// laneFor returns the lane of a log file, made on first use. Lock held.
func (f *Forwarder) laneFor(path string) *lane {
	l := f.lanes[path]
	if l == nil {
		l = &lane{log: path, checkFile: path + checkpointName}
		l.caughtUp.Store(time.Now().UnixNano())
		l.readFrom.Store(1) // until the lane knows where it is, every backup waits for it
		f.lanes[path] = l
	}
	return l
}

// schedule queues a lane for a worker; a lane being forwarded, or waiting
// out a failure, runs again afterwards. Lock held.
func (f *Forwarder) schedule(l *lane) {
	switch {
	case l.running || l.backoff:
		l.again = true
	case !l.queued:
		l.queued = true
		f.queue = append(f.queue, l)
		select {
		case f.signal <- struct{}{}:
		default:
		}
	}
}

// Notify tells the forwarder the writer has written to path: it never
// waits.
func (f *Forwarder) Notify(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started {
		f.schedule(f.laneFor(path))
	}
}

// Ready is nil while forwarding works.
func (f *Forwarder) Ready() error {
	if p := f.failure.Load(); p != nil {
		return errors.New(*p)
	}
	if !f.nc.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", strings.Join(f.opt.URLs, ","))
	}
	return nil
}

func (f *Forwarder) fail(err error) {
	msg := err.Error()
	if old := f.failure.Swap(&msg); old == nil || *old != msg {
		f.log.Warn("forwarding fails", "err", err)
	}
}

func (f *Forwarder) ok() {
	f.retryWait.Store(int64(retryMin))
	if f.failure.Swap(nil) != nil {
		f.log.Info("forwarding again")
	}
}

// Run forwards until ctx is done: every file of the log is a lane, run
// by a worker when it has lines waiting. A failure is retried with a
// back-off; the window in flight is sent again with the same message IDs.
// It returns early only when a lane's checkpoint cannot be read.
func (f *Forwarder) Run(ctx context.Context) error {
	defer f.nc.Close()
	f.retryWait.Store(int64(retryMin))
	paths := []string{f.opt.Log}
	if f.opt.Route != nil {
		var err error
		if paths, err = f.opt.Route.LiveFiles(); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.started = true
	for _, p := range paths {
		f.schedule(f.laneFor(p))
	}
	f.mu.Unlock()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { f.work(ctx, cancel) })
	}
	wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// errFatal marks a lane failure that no retry can pass.
type errFatal struct{ error }

// work runs lanes until ctx is done.
func (f *Forwarder) work(ctx context.Context, cancel context.CancelCauseFunc) {
	for {
		l := f.take(ctx)
		if l == nil {
			return
		}
		err := f.runLane(ctx, l)
		var fatal errFatal
		if errors.As(err, &fatal) {
			cancel(fatal.error)
			return
		}
		f.done(ctx, l, err)
	}
}

// take waits for a queued lane; nil once ctx is done.
func (f *Forwarder) take(ctx context.Context) *lane {
	for {
		f.mu.Lock()
		if len(f.queue) > 0 {
			l := f.queue[0]
			f.queue[0] = nil
			f.queue = f.queue[1:]
			l.queued, l.running = false, true
			if len(f.queue) > 0 { // another worker may take the next
				select {
				case f.signal <- struct{}{}:
				default:
				}
			}
			f.mu.Unlock()
			return l
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-f.signal:
		}
	}
}

// done ends a lane's run: after a failure it runs again after the
// back-off; written to meanwhile, it runs again now.
func (f *Forwarder) done(ctx context.Context, l *lane, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l.running = false
	if err != nil && ctx.Err() == nil {
		f.streamOK.Store(false)
		f.fail(err)
		f.m.Retries.Inc()
		wait := time.Duration(f.retryWait.Load())
		f.retryWait.Store(int64(min(2*wait, retryMax)))
		l.backoff = true
		time.AfterFunc(wait, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			l.backoff, l.again = false, false
			f.schedule(l)
		})
		return
	}
	if l.again {
		l.again = false
		f.schedule(l)
	}
}

// runLane forwards a lane until everything written is acknowledged.
func (f *Forwarder) runLane(ctx context.Context, l *lane) error {
	if !f.streamOK.Load() {
		if err := f.ensureStream(ctx); err != nil {
			return err
		}
		f.streamOK.Store(true)
		f.ok() // connected, and the stream takes the subject
	}
	if l.cp == nil {
		cp, err := f.load(l)
		if err != nil {
			return errFatal{err}
		}
		l.cp = &cp
	}
	err := f.forward(ctx, l, l.cp)
	if ctx.Err() != nil { // a stop: the last window acknowledged need not be sent again
		err = errors.Join(err, f.save(l, *l.cp))
	}
	return err
}

// ensureStream finds the stream, or creates it; a stream that exists must
// take the edge's subject, and have the partitions configured.
func (f *Forwarder) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	s, err := f.js.Stream(ctx, f.opt.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = f.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:             f.opt.Stream,
			Subjects:         f.layout.Subjects(),
			SubjectTransform: f.layout.Transform(),
			Replicas:         f.opt.Replicas,
			Duplicates:       duplicates,
			Storage:          jetstream.FileStorage,
		})
		if err != nil {
			return fmt.Errorf("create stream %s: %w", f.opt.Stream, err)
		}
		f.log.Info("stream created", "stream", f.opt.Stream, "subjects", f.layout.Subjects(), "partitions", f.opt.Partitions, "replicas", f.opt.Replicas)
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", f.opt.Stream, err)
	}
	cfg := s.CachedInfo().Config
	if err := f.layout.TakesEdges(cfg); err != nil {
		return err
	}
	if f.opt.Partitions > 0 {
		return f.layout.SamePartitions(cfg)
	}
	return nil
}

// forward sends a lane's windows until everything written is
// acknowledged, ctx is done or a window fails.
func (f *Forwarder) forward(ctx context.Context, l *lane, cp *checkpoint) error {
	seg, err := f.open(l, cp.Acked)
	if err != nil || seg == nil {
		return err
	}
	defer func() {
		if seg != nil {
			seg.close()
		}
	}()
	if seg.id != cp.Acked.Segment {
		cp.Window = nil // planned in a file that is gone
	}
	l.reading(seg)
	cp.Acked.Segment, cp.Acked.File, cp.Acked.Offset = seg.id, seg.name, seg.offset
	// The window's bytes stay in memory (at most windowChunks chunks)
	// until acknowledged: reading a compressed backup again would mean
	// decompressing it from its start. After a failure they are read
	// again from the file.
	var win []byte
	acked := false                         // a window was acknowledged since the checkpoint was saved
	maxPayload := f.nc.MaxPayload() - 4096 // room for the headers
	for ctx.Err() == nil {
		if len(cp.Window) == 0 { // plan the next window
			win = win[:0]
			for len(cp.Window) < windowChunks {
				start := seg.offset
				before := len(win)
				var lines int
				win, lines, err = seg.chunk(win, chunkBytes, chunkLines)
				if err != nil {
					return err
				}
				if lines == 0 && seg.rotatedAway(l.log) && seg.more() {
					// A complete file that ends without a newline (a write
					// cut by a full disk): its last bytes are a line.
					if win, err = seg.rest(win); err != nil {
						return err
					}
					lines = 1
				}
				if lines == 0 {
					break
				}
				c := planned{Start: start, End: seg.offset, Lines: lines}
				if maxPayload > 0 && int64(len(win)-before) > maxPayload {
					c.Skip = true
					win = win[:before]
					f.m.TooLong.Inc()
					f.log.Error("line longer than NATS takes (max_payload): not forwarded", "file", seg.name, "offset", start, "bytes", c.End-c.Start)
				}
				cp.Window = append(cp.Window, c)
			}
			if len(cp.Window) == 0 {
				if acked { // a restart need not send the last window again
					if err := f.save(l, *cp); err != nil {
						return err
					}
					acked = false
				}
				next, caughtUp, err := f.idle(l, seg)
				if err != nil || caughtUp {
					return err
				}
				if next == nil {
					continue
				}
				seg.close()
				seg = next
				l.reading(seg)
				cp.Acked = position{seg.id, seg.name, 0}
				continue
			}
			l.behind.Store(true)
			l.lag.Store(l.lagBytes(seg, cp.Acked.Offset))
			// The window's lines are on this disk before they leave it: a
			// power cut must not take from the edge lines the stream has,
			// whose offsets new lines would then reuse.
			if err := seg.sync(); err != nil {
				return err
			}
			if err := f.save(l, *cp); err != nil {
				return err
			}
		}
		err := f.send(ctx, l, seg, cp, win)
		win = nil // after a failure, the window is read again from the file
		if err != nil {
			return err
		}
		acked = true
		f.ok()
	}
	return nil
}

// send publishes the planned window, reading its chunks again from the
// segment, and waits for every acknowledgement.
func (f *Forwarder) send(ctx context.Context, l *lane, seg *segment, cp *checkpoint, win []byte) error {
	if win == nil && seg.offset != cp.Window[0].Start {
		if err := seg.seek(cp.Window[0].Start); err != nil {
			return err
		}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(cp.Window))
	sent := make([]int, 0, len(cp.Window)) // the window's chunk of each future
	var buf []byte
	for i, c := range cp.Window {
		var data []byte
		switch {
		case c.Skip && win == nil:
			if err := seg.skip(c.End - c.Start); err != nil {
				return err
			}
			continue
		case c.Skip:
			continue
		case win != nil:
			data, win = win[:c.End-c.Start], win[c.End-c.Start:]
		default:
			var err error
			if buf, err = seg.exactly(buf, c.End-c.Start); err != nil {
				return err
			}
			data = buf
		}
		msg := nats.NewMsg(f.subject)
		msg.Data = slices.Clone(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			msg.Data = append(msg.Data, '\n') // the last line of a cut file
		}
		msg.Header.Set("Aggregator-Edge", f.opt.Edge)
		msg.Header.Set("Aggregator-Source", filepath.Base(l.log))
		id := fmt.Sprintf("%s/%s/%d", f.opt.Edge, seg.id, c.Start)
		fut, err := f.js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(f.opt.Stream))
		if err != nil {
			f.settle(futures)
			return fmt.Errorf("publish: %w", err)
		}
		futures = append(futures, fut)
		sent = append(sent, i)
	}
	timeout := time.NewTimer(ackWait)
	defer timeout.Stop()
	for i, fut := range futures {
		select {
		case ack := <-fut.Ok():
			c := cp.Window[sent[i]]
			f.m.Lines.Add(float64(c.Lines))
			f.m.Bytes.Add(float64(c.End - c.Start))
			if ack.Duplicate {
				f.m.Duplicates.Inc()
			}
		case err := <-fut.Err():
			f.settle(futures[i+1:])
			return fmt.Errorf("publish: %w", err)
		case <-timeout.C:
			return fmt.Errorf("no acknowledgement from JetStream within %s", ackWait)
		case <-ctx.Done():
			f.settle(futures[i:])
			return ctx.Err() // the window is sent again at the next start
		}
	}
	last := cp.Window[len(cp.Window)-1]
	cp.Acked = position{seg.id, seg.name, last.End}
	cp.Window = cp.Window[:0]
	return nil
}

// settle waits, a bounded time, for futures already sent, so that a
// failed window is sent again only once they are decided.
func (f *Forwarder) settle(futures []jetstream.PubAckFuture) {
	deadline := time.After(ackWait)
	for _, fut := range futures {
		select {
		case <-fut.Ok():
		case <-fut.Err():
		case <-deadline:
			return
		}
	}
}

// idle is called when seg has no whole line left to read. When seg is
// complete (the live file was rotated away and read to its end), it
// returns the next segment, if that has a line yet. Otherwise the lane is
// caught up: it ends, and the writer's next write to it runs it again.
func (f *Forwarder) idle(l *lane, seg *segment) (next *segment, caughtUp bool, err error) {
	if seg.rotatedAway(l.log) {
		// The writer finishes a file before it rotates, so once the path
		// names another file this one is complete; what was written just
		// before the rotation is read first.
		if seg.more() {
			return nil, false, nil
		}
		if next, err = f.next(l, seg); next != nil || err != nil {
			return next, false, err
		}
		return nil, true, nil // the new live file has no whole line yet
	}
	l.behind.Store(false)
	l.caughtUp.Store(time.Now().UnixNano())
	l.lag.Store(0)
	return nil, true, nil
}

// lagBytes is how many bytes of the lane's log are not yet acknowledged:
// the rest of seg from acked, and every later file (a gzipped one by its
// compressed size).
func (l *lane) lagBytes(seg *segment, acked int64) int64 {
	files, _ := sink.Files(l.log)
	var n int64
	after := false
	for _, name := range files {
		info, err := os.Stat(name)
		if err != nil {
			continue
		}
		switch {
		case after:
			n += info.Size()
		case name == seg.name:
			n += info.Size() - acked
			after = true
		}
	}
	return max(n, 0)
}

// reading notes the segment now being forwarded: it and every backup
// rotated after it are not yet acknowledged. A plain file's last write
// comes before its rotation (a second of margin for the millisecond in
// backup names); a compressed backup's name says when it was rotated.
func (l *lane) reading(seg *segment) {
	var since time.Time
	if seg.file != nil {
		if info, err := seg.file.Stat(); err == nil {
			since = info.ModTime().Add(-time.Second)
		}
	} else if at, err := sink.BackupTime(seg.name); err == nil {
		since = at
	}
	if !since.IsZero() {
		l.readFrom.Store(since.UnixNano())
	}
}

// Unforwarded is the rotation time from which the backups of the log
// file path are not yet forwarded; retention keeps them. A file whose
// lane has not run yet keeps them all.
func (f *Forwarder) Unforwarded(path string) time.Time {
	f.mu.Lock()
	l := f.lanes[path]
	f.mu.Unlock()
	if l == nil {
		return time.Unix(0, 1)
	}
	return time.Unix(0, l.readFrom.Load())
}

// LagSeconds is how long lines have waited: 0 when everything written is
// acknowledged, otherwise the time since that was last so, for the lane
// furthest behind.
func (f *Forwarder) LagSeconds() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldest := int64(0)
	for _, l := range f.lanes {
		if at := l.caughtUp.Load(); l.behind.Load() && (oldest == 0 || at < oldest) {
			oldest = at
		}
	}
	if oldest == 0 {
		return 0
	}
	return time.Since(time.Unix(0, oldest)).Seconds()
}

// LagBytes is how many bytes are written and not yet acknowledged, over
// all lanes, as of each one's last window.
func (f *Forwarder) LagBytes() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, l := range f.lanes {
		n += l.lag.Load()
	}
	return float64(n)
}

// next opens the segment after seg, or returns nil when there is none yet
// (the new live file has no whole line). A backup being compressed may
// vanish between the listing and its opening: the directory is then
// listed again.
func (f *Forwarder) next(l *lane, seg *segment) (*segment, error) {
	for attempt := 0; ; attempt++ {
		files, err := sink.Files(l.log)
		if err != nil {
			return nil, err
		}
		found, raced := false, false
		for _, name := range files {
			id, ok, err := segmentID(name)
			if err != nil {
				raced = true
				break
			}
			if !ok {
				continue
			}
			if found {
				next, err := openSegment(name, id, 0)
				if err != nil {
					raced = true
					break
				}
				return next, nil
			}
			found = id == seg.id
		}
		if !raced || attempt >= 10 {
			return nil, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// open finds the acknowledged position's segment, or the oldest file when
// there is none (first start); nil when nothing is written yet. A segment not found in two listings apart
// is gone (deleted before it was forwarded): logged and counted, and
// forwarding goes on with the first file rotated after it.
func (f *Forwarder) open(l *lane, at position) (*segment, error) {
	missed := 0
	for {
		files, err := sink.Files(l.log)
		if err != nil {
			return nil, err
		}
		type candidate struct{ name, id string }
		var all []candidate
		for _, name := range files {
			if id, ok, err := segmentID(name); err == nil && ok {
				all = append(all, candidate{name, id})
			}
		}
		if at.Segment != "" {
			for _, c := range all {
				if c.id == at.Segment {
					if s, err := openSegment(c.name, c.id, at.Offset); err == nil {
						return s, nil
					}
				}
			}
			if missed++; missed < 3 { // a backup caught between its compression and the removal of the original
				time.Sleep(50 * time.Millisecond)
				continue
			}
			f.m.SegmentsLost.Inc()
			f.log.Error("the file being forwarded is gone; continuing with the next there is", "file", at.File, "offset", at.Offset)
			if lostAt, err := sink.BackupTime(at.File); err == nil {
				for _, c := range all {
					if at, err := sink.BackupTime(c.name); err != nil || at.After(lostAt) {
						return openSegment(c.name, c.id, 0)
					}
				}
			}
			at = position{}
		}
		if len(all) > 0 {
			return openSegment(all[0].name, all[0].id, 0)
		}
		return nil, nil // nothing written yet
	}
}
