// Package sink writes received records as lines to rotating log files:
// one file, or a file per source when the path is a template (see route).
package sink

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"aggregator/internal/queue"
	"aggregator/internal/route"
	"aggregator/internal/statefile"
)

// Options configure the writer.
type Options struct {
	// Path of the live file; backups go next to it. With placeholders
	// (Route), the template of every file's path.
	Path string
	// Route names each record's file when Path has placeholders; nil
	// (or a template without placeholders) writes one file at Path.
	Route    *route.Template
	Format   Format
	Location *time.Location // time zone of the timestamps; nil means UTC
	// MaxSizeMB: a live file is rotated before it would grow past this.
	MaxSizeMB  int
	MaxBackups int // 0 keeps all
	MaxAgeDays int // 0 keeps all
	Compress   Codec
	// RotateEvery also rotates on wall-clock boundaries (e.g. 24h rotates
	// at midnight UTC); 0 turns it off.
	RotateEvery time.Duration
	// FlushInterval is the longest a line waits in the buffer while more
	// records keep arriving. An idle writer flushes at once.
	FlushInterval time.Duration
	// BufferBytes is the write batch: lines are written when this much
	// has gathered, or sooner (see FlushInterval). With a file per
	// source it is shared by all files, and at least RoutedBufferBytes.
	BufferBytes int
	// SyncInterval is the longest written lines wait before the file is
	// synced (fdatasync; with a file per source one syncfs covers them
	// all); 0 syncs only at rotation, at stop and for Durable batches. A
	// power cut loses at most this much.
	SyncInterval time.Duration
	// MaxOpenFiles bounds the descriptors of a file per source: the files
	// used least recently are closed, and opened again when written.
	MaxOpenFiles int
	// MaxFiles bounds the distinct files of a file per source: records
	// that would start another go to the overflow file (Route.Overflow).
	MaxFiles int
	// Written, when set, is called with a file's path after each write
	// that reached it; it must not block (the forwarder's Notify).
	Written func(path string)
	// Unforwarded, when set, says from which rotation time on a file's
	// backups are not yet forwarded: retention keeps them (see
	// compressor.prune).
	Unforwarded func(path string) time.Time
}

// DefaultBufferBytes is the write batch size when Options leave it 0.
const DefaultBufferBytes = 256 << 10

// RoutedBufferBytes is the least write batch of a file per source, shared
// by all its files: the most their lines may hold in memory together
// before every file is written. It is large because writing is cheap per
// byte and dear per call: ext4 takes a few microseconds for each write(2)
// to a file (its time, its inode, a page begun), so a thousand files
// written a line or two at a time cost the writer more than receiving.
// See docs/files-by-source.md for the figures.
const RoutedBufferBytes = 32 << 20

// routedChunk: a file of a file per source whose lines reach this is
// written at once, whatever the others do.
const routedChunk = 48 << 10

// routedQuiet is how long the input of a file per source must pause
// before the lines are written, when FlushInterval has not come and few
// files hold lines (routedQuietFiles). With more, they wait for
// FlushInterval, a chunk or the shared batch: under load the input pauses
// often for a moment, and a write of every file each time cost half the
// throughput.
const (
	routedQuiet      = time.Millisecond
	routedQuietFiles = 64
)

// Buffers of a file per source kept once written, so that a busy file
// does not allocate its buffer again at each write: at most
// routedKeepBytes for one file, routedKeepTotal for all (with ten thousand
// files that each had a burst, memory would otherwise be ten thousand
// bursts). A file written by chunk lets its buffer go: it has more coming
// than a kept buffer saves.
const (
	routedKeepBytes = 64 << 10
	routedKeepTotal = 16 << 20
)

// Idle files of a file per source: closed after idleClose, forgotten (no
// longer counted against MaxFiles) after idleForget.
const (
	idleClose  = 5 * time.Minute
	idleForget = time.Hour
)

// compressWait bounds how long Run waits, on stop, for the compression of
// the last backups.
const compressWait = 5 * time.Second

// Writer owns the log files. Run is its only goroutine: it encodes records,
// writes whole lines, rotates and reopens, all in one loop, so that no lock
// is taken per line and a rotation can never fall inside a line.
type Writer struct {
	opt      Options
	enc      encoder
	maxBytes int64
	m        *Metrics
	log      *slog.Logger
	comps    *compressors

	// Owned by Run.
	main       *logFile            // the one file; nil with a file per source
	files      map[string]*logFile // a file per source, by name
	byKey      map[string]*logFile // the same files by the raw values they are named from (route.AppendKey)
	overflow   *logFile            // past MaxFiles; nil until needed
	opened     list.List           // open files of a file per source, most recently used first
	queue      []*logFile          // files with lines in their buffer
	buffered   int                 // bytes in all buffers
	budget     int                 // buffered bytes that start a write
	name       []byte              // scratch for a routed file's name
	key        []byte              // scratch for a routed file's key
	dirDesc    *os.File            // the directory of a file per source, for syncfs
	lastErrLog time.Time
	lastSync   time.Time
	done       []func(queue.Written) // Done callbacks of batches encoded and not yet flushed
	durable    []durableFile         // the files of the Durable batch in the buffer, and where it starts in each
	routedTick time.Time             // last pass over the routed files' timers
	lastInput  time.Time             // when the last batch was taken, for the pause of a file per source
	chunkErr   error                 // of chunks written since the last flush, for finish
	bufCap     int                   // capacity of the buffers of a file per source, written or not

	err   atomic.Pointer[string] // last write error, for readiness; nil when healthy
	alive atomic.Int64           // Unix nanoseconds of the loop's last tick, for the watchdog
}

// New opens (creates if need be) the live file, so that a path that cannot
// be written fails at start-up. With a file per source it checks that the
// directory can be written.
func New(opt Options, m *Metrics, log *slog.Logger) (*Writer, error) {
	if opt.BufferBytes <= 0 {
		opt.BufferBytes = DefaultBufferBytes
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 100 * time.Millisecond
	}
	if opt.Route != nil && opt.Route.Static() {
		opt.Route = nil
	}
	w := &Writer{
		opt:      opt,
		enc:      encoder{format: opt.Format, clock: newClock(opt.Location)},
		maxBytes: int64(opt.MaxSizeMB) << 20,
		m:        m,
		log:      log,
		comps:    newCompressors(m),
		budget:   opt.BufferBytes,
	}
	w.alive.Store(time.Now().UnixNano()) // LastTurn is never zero
	if opt.Route == nil {
		w.main = w.newFile(opt.Path)
		w.main.buf = make([]byte, 0, opt.BufferBytes+opt.BufferBytes/4)
		if err := w.main.open(false); err != nil {
			return nil, err
		}
		w.main.comp = w.compressorFor(opt.Path)
		w.comps.poke(w.main.comp)
		return w, nil
	}
	w.budget = max(opt.BufferBytes, RoutedBufferBytes)
	w.files = map[string]*logFile{}
	w.byKey = map[string]*logFile{}
	dir, err := os.Open(opt.Route.Dir())
	if err == nil {
		err = unix.Access(opt.Route.Dir(), unix.W_OK)
	}
	if err != nil {
		if dir != nil {
			dir.Close()
		}
		return nil, fmt.Errorf("log directory %s: %w", opt.Route.Dir(), err)
	}
	w.dirDesc = dir
	w.tendExisting()
	return w, nil
}

// tendExisting has the backups of the files a file per source left at an
// earlier run compressed and pruned, whether or not their sources speak
// again.
func (w *Writer) tendExisting() {
	entries, err := os.ReadDir(w.opt.Route.Dir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type().IsRegular() && w.opt.Route.Match(e.Name()) {
			w.comps.poke(w.compressorFor(filepath.Join(w.opt.Route.Dir(), e.Name())))
		}
	}
}

func (w *Writer) compressorFor(path string) *compressor {
	var keepFrom func() time.Time
	if w.opt.Unforwarded != nil {
		keepFrom = func() time.Time { return w.opt.Unforwarded(path) }
	}
	return newCompressor(path, w.opt.Compress, w.opt.MaxBackups, w.opt.MaxAgeDays, keepFrom, w.m, w.log)
}

func (w *Writer) newFile(path string) *logFile {
	f := newLogFile(path, w.opt.MaxSizeMB)
	if w.opt.RotateEvery > 0 {
		f.nextRotate = nextBoundary(time.Now(), w.opt.RotateEvery)
	}
	return f
}

// sync makes what was written to f durable. fdatasync, not fsync: the
// size is synced with the data, the times are not needed.
func (w *Writer) sync(f *logFile) error {
	if !f.dirty || f.live == nil {
		return nil
	}
	start := time.Now()
	err := syscall.Fdatasync(int(f.live.Fd()))
	w.lastSync = time.Now()
	w.m.SyncSeconds.Observe(w.lastSync.Sub(start).Seconds())
	if err != nil {
		err = fmt.Errorf("sync %s: %w", f.path, err)
		w.failed(w.m.SyncErrors, "sync failed", err, f.path)
		return err
	}
	f.dirty = false
	return nil
}

// syncAll makes every file durable: the one file by fdatasync; a file per
// source by one syncfs of their file system, since a thousand fdatasyncs
// a second would take the writer's whole time.
func (w *Writer) syncAll() {
	if w.main != nil {
		w.sync(w.main)
		return
	}
	w.syncRouted()
}

// syncRouted syncs the file system of a file per source, once, if any of
// its files was written since the last time: their lines, and the
// directory entries of the files created since (see logFile.open).
func (w *Writer) syncRouted() error {
	dirty := false
	for _, f := range w.files {
		dirty = dirty || f.dirty
	}
	if w.overflow != nil {
		dirty = dirty || w.overflow.dirty
	}
	if !dirty {
		return nil
	}
	start := time.Now()
	err := unix.Syncfs(int(w.dirDesc.Fd()))
	w.lastSync = time.Now()
	w.m.SyncSeconds.Observe(w.lastSync.Sub(start).Seconds())
	if err != nil {
		err = fmt.Errorf("syncfs %s: %w", w.opt.Route.Dir(), err)
		w.failed(w.m.SyncErrors, "sync failed", err, w.opt.Route.Dir())
		return err
	}
	for _, f := range w.files {
		f.dirty = false
	}
	if w.overflow != nil {
		w.overflow.dirty = false
	}
	return nil
}

// nextBoundary is the first multiple of every (counted from the Unix epoch,
// so 24h means midnight UTC) after now.
func nextBoundary(now time.Time, every time.Duration) time.Time {
	return now.Truncate(every).Add(every)
}

// Ready reports nil when the file is open and the last write succeeded.
func (w *Writer) Ready() error {
	if p := w.err.Load(); p != nil {
		return fmt.Errorf("%s", *p)
	}
	return nil
}

// Run writes every batch from q until q.C is closed, then flushes, closes
// the files and waits (bounded) for the last backups to be compressed.
// reopen asks for the files to be closed and opened again (SIGHUP).
func (w *Writer) Run(q *queue.Queue, reopen <-chan struct{}) error {
	stopComp := make(chan struct{})
	compCtx, cancelComp := context.WithCancel(context.Background())
	defer cancelComp()
	go w.comps.run(compCtx, stopComp)
	// The tick flushes, syncs, checks the time rotation and shows the loop
	// is alive (the watchdog): at least once a second whatever
	// FlushInterval, and at least once per SyncInterval, so that a short
	// one is kept.
	every := min(w.opt.FlushInterval, time.Second)
	if w.opt.SyncInterval > 0 {
		every = min(every, w.opt.SyncInterval)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	quietTimer := time.NewTimer(time.Hour)
	quietTimer.Stop()
	var quiet <-chan time.Time // armed while lines of a file per source wait for a pause
	for {
		select {
		case b, ok := <-q.C:
			if !ok {
				w.flush()
				w.syncAll() // a clean stop leaves everything on disk
				err := w.closeAll()
				w.stopCompressor(stopComp, cancelComp)
				if err != nil {
					return fmt.Errorf("close %s: %w", w.opt.Path, err)
				}
				return nil
			}
			q.Taken(b)
			w.encode(b)
			q.Recycle(b)
			if w.main == nil {
				w.lastInput = time.Now()
			}
			switch {
			case len(q.C) > 0:
			case w.main != nil:
				w.flush() // nothing more waiting: let the lines reach the file now
			case w.buffered > 0 && quiet == nil && len(w.queue) <= routedQuietFiles:
				// A file per source writes once the input has paused: a
				// queue that empties for a moment under load would
				// otherwise cost a write per file each time.
				quietTimer.Reset(routedQuiet)
				quiet = quietTimer.C
			}
		case <-quiet:
			quiet = nil
			// Not the timer's time, which is when it was due: the
			// writer may have been busy since.
			paused := time.Since(w.lastInput)
			switch {
			case len(w.queue) > routedQuietFiles:
				// Lines came for many files meanwhile: they wait for
				// FlushInterval.
			case paused < routedQuiet:
				quietTimer.Reset(routedQuiet - paused)
				quiet = quietTimer.C
			case len(q.C) == 0:
				w.flush()
			}
		case now := <-tick.C:
			w.alive.Store(now.UnixNano())
			w.flush()
			if w.opt.SyncInterval > 0 && now.Sub(w.lastSync) >= w.opt.SyncInterval {
				w.syncAll()
			}
			w.timers(now)
		case <-reopen:
			w.flush()
			w.reopen()
		}
	}
}

// timers rotates files whose time has come and, with a file per source,
// closes and forgets idle ones (at most once a second: it visits them all).
func (w *Writer) timers(now time.Time) {
	if w.main != nil {
		w.rotateOnTime(w.main, now)
		return
	}
	if now.Sub(w.routedTick) < time.Second {
		return
	}
	w.routedTick = now
	for _, f := range w.files {
		w.rotateOnTime(f, now)
		idle := now.Sub(f.lastUsed)
		switch {
		case idle >= idleForget && !f.queued:
			w.closeFile(f, "idle")
			w.forget(f)
		case idle >= idleClose && f.live != nil && !f.queued:
			w.closeFile(f, "idle")
		case idle >= time.Second && !f.queued:
			w.release(f) // a burst's buffer is not kept for a quiet file
		}
	}
	if w.overflow != nil {
		w.rotateOnTime(w.overflow, now)
	}
	w.m.FilesKnown.Set(float64(len(w.files)))
}

func (w *Writer) rotateOnTime(f *logFile, now time.Time) {
	if f.nextRotate.IsZero() || now.Before(f.nextRotate) {
		return
	}
	if f.size > 0 { // an idle period leaves no empty backups behind
		w.rotate(f, "time")
	}
	f.nextRotate = nextBoundary(now, w.opt.RotateEvery)
}

func (w *Writer) stopCompressor(stop chan struct{}, cancel context.CancelFunc) {
	close(stop)
	select {
	case <-w.comps.done:
	case <-time.After(compressWait):
		cancel()
		<-w.comps.done
		w.log.Warn("stopped before every backup was compressed; the rest is compressed at the next start")
	}
}

// encode appends b's records as lines, writing whenever the buffers are
// full.
func (w *Writer) encode(b *queue.Batch) {
	if b.Durable {
		w.encodeDurable(b)
		return
	}
	w.appendRecords(b, true)
	if b.Done != nil {
		w.done = append(w.done, b.Done)
	}
}

// durableFile is a file a Durable batch goes to, and its size before.
type durableFile struct {
	f  *logFile
	at int64
}

// encodeDurable writes a Durable batch by itself, synced before its Done:
// each of its files is started first when its part would not fit in the
// one there, then Before is told where each file stands, then the lines
// are written. A batch whose write or sync fails is cut back out of its
// files, so that it is there whole or not at all; it comes again.
func (w *Writer) encodeDurable(b *queue.Batch) {
	w.flush()
	w.appendRecords(b, false)
	if b.Done != nil {
		w.done = append(w.done, b.Done)
	}
	var at []queue.FileAt
	var err error
	for _, f := range w.queue {
		if err = w.use(f); err != nil {
			break
		}
		if f.size > 0 && f.size+int64(len(f.buf)) > w.maxBytes {
			w.rotate(f, "size")
		}
		w.durable = append(w.durable, durableFile{f, f.size})
		at = append(at, queue.FileAt{Path: f.path, Inode: f.inode, Size: f.size})
	}
	if err == nil && b.Before != nil && len(at) > 0 {
		err = b.Before(at)
	}
	if err != nil {
		for _, f := range w.queue { // not a byte of the batch is written
			f.buf, f.lines, f.queued = f.buf[:0], 0, false
		}
		w.queue, w.buffered, w.durable = w.queue[:0], 0, w.durable[:0]
		w.finish(err)
		return
	}
	w.flush()
}

// fileFor is the file a record goes to. A file is found by the raw values
// its name is made of, so that a record costs a map lookup, not the
// encoding of its name; the name decides only when the key is new, and
// two keys whose names meet (a digest's collision, which a publisher
// could seek) share the file, never two writers of one file.
func (w *Writer) fileFor(r *queue.Record) *logFile {
	if w.main != nil {
		return w.main
	}
	w.key = w.opt.Route.AppendKey(w.key[:0], r)
	if f, ok := w.byKey[string(w.key)]; ok {
		return f
	}
	w.name = w.opt.Route.AppendName(w.name[:0], r)
	f, ok := w.files[string(w.name)]
	if !ok {
		if len(w.files) >= w.opt.MaxFiles {
			// Not remembered by key: the values past the limit are
			// as many as publishers care to send.
			w.m.RouteOverflow.Inc()
			if w.overflow == nil {
				w.overflow = w.newFile(w.opt.Route.Overflow())
				w.overflow.comp = w.compressorFor(w.overflow.path)
			}
			return w.overflow
		}
		name := string(w.name)
		f = w.newFile(filepath.Join(w.opt.Route.Dir(), name))
		f.comp = w.compressorFor(f.path)
		w.files[name] = f
		w.m.FilesKnown.Set(float64(len(w.files)))
	}
	if len(f.keys) < maxKeysPerFile && len(w.key) <= maxKeyBytes {
		key := string(w.key)
		f.keys = append(f.keys, key)
		w.byKey[key] = f
	}
	return f
}

// Keys remembered: at most maxKeysPerFile for one file (one, unless values
// were made to collide), and none longer than maxKeyBytes (a topic may be
// as long as a message; a name is cut to 200 bytes). Records of the others
// are named each time.
const (
	maxKeysPerFile = 4
	maxKeyBytes    = 256
)

// forget drops a file of a file per source from the writer's maps.
func (w *Writer) forget(f *logFile) {
	delete(w.files, filepath.Base(f.path))
	for _, k := range f.keys {
		delete(w.byKey, k)
	}
	f.keys = nil
}

// appendRecords encodes b's records into their files' buffers; with
// flushFull, full buffers are written on the way.
func (w *Writer) appendRecords(b *queue.Batch, flushFull bool) {
	for i := range b.Records {
		f := w.fileFor(&b.Records[i])
		start, capacity := len(f.buf), cap(f.buf)
		if b.Raw {
			f.buf = append(append(f.buf, b.Records[i].Frames[0]...), '\n')
		} else {
			f.buf = w.enc.appendLine(f.buf, b.Records[i].Endpoint, &b.Records[i])
		}
		w.resized(f, capacity)
		n := len(f.buf) - start
		if int64(len(f.buf)) > w.maxBytes {
			line := f.buf[start:]
			f.buf = f.buf[:start]
			if int64(len(line)) > w.maxBytes {
				w.m.droppedTooLong.Inc() // could never fit in a file
				continue
			}
			// Rare: a huge line after a full buffer; one write may not
			// exceed the file size, so write the two apart.
			line = bytes.Clone(line)
			w.flush()
			capacity = cap(f.buf)
			f.buf = append(f.buf, line...)
			w.resized(f, capacity)
		}
		f.lines++
		w.buffered += n
		if !f.queued {
			f.queued = true
			w.queue = append(w.queue, f)
		}
		switch {
		case !flushFull:
		case w.buffered >= w.budget:
			w.flush()
		case w.main == nil && len(f.buf) >= routedChunk:
			// Enough for an efficient write: this file need not wait
			// for the others. It stays queued, its buffer empty, until
			// the next flush.
			w.buffered -= len(f.buf)
			if err := w.write(f); err != nil {
				w.chunkErr = errors.Join(w.chunkErr, err)
			}
			w.release(f)
		}
	}
}

// flush writes every buffer. They hold whole lines only, and a file is
// rotated before a write that would take it past its maximum size, so a
// line never straddles two files.
func (w *Writer) flush() {
	var err error
	for i, f := range w.queue {
		err = errors.Join(err, w.write(f))
		f.queued = false
		w.queue[i] = nil
	}
	w.queue = w.queue[:0]
	w.buffered = 0
	err, w.chunkErr = errors.Join(w.chunkErr, err), nil
	w.finish(err)
}

// write writes f's buffer to f.
func (w *Writer) write(f *logFile) error {
	capacity := cap(f.buf)
	defer func() {
		f.buf = f.buf[:0]
		f.lines = 0
		w.resized(f, capacity)
		if cap(f.buf) > routedKeepBytes || w.bufCap > routedKeepTotal {
			w.release(f)
		}
	}()
	if len(f.buf) == 0 {
		return nil
	}
	if err := w.use(f); err != nil {
		w.writeFailed(f, err, 0)
		return err
	}
	if f.size+int64(len(f.buf)) > w.maxBytes {
		w.rotate(f, "size")
	}
	if f.partial {
		f.buf = append(f.buf, '\n') // end the cut line, then rotate the buffer into place
		copy(f.buf[1:], f.buf[:len(f.buf)-1])
		f.buf[0] = '\n'
	}
	n, err := f.lj.Write(f.buf)
	f.size += int64(n)
	f.dirty = f.dirty || n > 0
	w.m.Bytes.Add(float64(n))
	switch {
	case err != nil && len(w.durable) > 0:
		w.failed(w.m.WriteErrors, "write failed; the batch comes again", err, f.path)
		f.partial = n > 0 && f.buf[n-1] != '\n' // until finish cuts the batch back
	case err != nil:
		w.writeFailed(f, err, n)
	default:
		f.partial = false
		w.err.Store(nil)
		w.m.Lines.Add(float64(f.lines))
		if w.opt.Written != nil {
			w.opt.Written(f.path)
		}
	}
	return err
}

// resized accounts for a change of f's buffer from capacity bytes.
func (w *Writer) resized(f *logFile, capacity int) {
	if w.main == nil {
		w.bufCap += cap(f.buf) - capacity
	}
}

// release lets an empty buffer of a file per source go.
func (w *Writer) release(f *logFile) {
	if w.main == nil && len(f.buf) == 0 {
		w.bufCap -= cap(f.buf)
		f.buf = nil
	}
}

// use opens f if it is closed and marks it used: with a file per source,
// the file used least recently is closed first when MaxOpenFiles are open.
func (w *Writer) use(f *logFile) error {
	f.lastUsed = time.Now()
	if w.main != nil {
		if f.live == nil {
			return f.open(false)
		}
		return nil
	}
	if f.live != nil {
		w.opened.MoveToFront(f.lru)
		return nil
	}
	for w.opened.Len() >= max(w.opt.MaxOpenFiles, 1) {
		w.closeFile(w.opened.Back().Value.(*logFile), "evicted")
	}
	if err := f.open(true); err != nil {
		return err
	}
	f.lru = w.opened.PushFront(f)
	w.m.FilesOpen.Set(float64(w.opened.Len()))
	return nil
}

// closeFile closes an open file of a file per source.
func (w *Writer) closeFile(f *logFile, reason string) {
	if f.live == nil {
		return
	}
	if err := f.close(); err != nil {
		w.log.Warn("close", "file", f.path, "err", err)
	}
	w.opened.Remove(f.lru)
	f.lru = nil
	w.m.FilesClosed.WithLabelValues(reason).Inc()
	w.m.FilesOpen.Set(float64(w.opened.Len()))
}

// closeAll closes every file at stop.
func (w *Writer) closeAll() error {
	if w.main != nil {
		return w.main.close()
	}
	var err error
	for e := w.opened.Front(); e != nil; e = e.Next() {
		err = errors.Join(err, e.Value.(*logFile).close())
	}
	w.opened.Init()
	w.m.FilesOpen.Set(0)
	return errors.Join(err, w.dirDesc.Close())
}

// finish tells the batches whose lines were in the buffer how the write
// went.
func (w *Writer) finish(err error) {
	if len(w.durable) > 0 {
		if err == nil && w.main != nil {
			err = w.sync(w.main)
		} else if err == nil {
			err = w.syncRouted()
		}
		if err != nil {
			for _, d := range w.durable {
				w.cutBack(d)
			}
		}
		w.durable = w.durable[:0]
	}
	if len(w.done) == 0 {
		return
	}
	var written queue.Written
	if w.main != nil {
		written = queue.Written{Inode: w.main.inode, Size: w.main.size}
	}
	written.Err = err
	for _, done := range w.done {
		done(written)
	}
	clear(w.done)
	w.done = w.done[:0]
}

// cutBack removes from a file what a failed Durable batch wrote of
// itself. lumberjack is closed so that it opens the file again and learns
// its size.
func (w *Writer) cutBack(d durableFile) {
	f := d.f
	if f.live == nil { // closed since (more files than AGG_MAX_OPEN_FILES)
		if err := w.use(f); err != nil {
			w.log.Error("cut back a failed write", "file", f.path, "err", err)
			return
		}
	}
	if err := f.live.Truncate(d.at); err != nil {
		w.log.Error("cut back a failed write", "file", f.path, "err", err)
		return
	}
	f.lj.Close()
	f.size, f.partial = d.at, false
}

// failed records an error of a file for readiness, counts it in c, and
// logs it once per interval at most: a full disk fails every write.
func (w *Writer) failed(c prometheus.Counter, what string, err error, path string, attrs ...any) {
	c.Inc()
	msg := err.Error()
	w.err.Store(&msg)
	if now := time.Now(); now.Sub(w.lastErrLog) >= 10*time.Second {
		w.lastErrLog = now
		w.log.Error(what, append([]any{"file", path, "err", err}, attrs...)...)
	}
}

// writeFailed accounts for a failed write: the lines not written are
// counted as dropped, and the file is marked so that the next write first
// ends any line cut in the middle.
func (w *Writer) writeFailed(f *logFile, err error, n int) {
	lost := bytes.Count(f.buf[n:], []byte{'\n'})
	w.m.droppedWrite.Add(float64(lost))
	w.m.Lines.Add(float64(f.lines - lost))
	if n > 0 && f.buf[n-1] != '\n' {
		f.partial = true
	}
	w.failed(w.m.WriteErrors, "write failed; lines dropped", err, f.path, "lines", lost)
}

// rotate moves f's live file aside and starts a new one.
func (w *Writer) rotate(f *logFile, reason string) {
	// lumberjack names a backup after the current millisecond; a second
	// rotation within the same one would reuse the name and replace it.
	if d := time.Millisecond - time.Since(f.lastRotate); d > 0 {
		time.Sleep(d)
	}
	if err := w.use(f); err != nil {
		w.failed(w.m.WriteErrors, "rotate failed", err, f.path, "reason", reason)
		return
	}
	// The backup keeps its lines through a power cut: synced before the
	// rename, which is synced after it.
	w.sync(f)
	if err := f.lj.Rotate(); err != nil {
		w.failed(w.m.WriteErrors, "rotate failed", err, f.path, "reason", reason)
		return
	}
	f.lastRotate = time.Now()
	// lumberjack's new file, then the directory: the rename and the new
	// file's entry are durable before the backup is compressed or pruned
	// (open syncs the directory only for a file it creates itself).
	err := f.open(w.main == nil)
	if err == nil {
		err = statefile.SyncDir(filepath.Dir(f.path))
	}
	if err != nil {
		msg := err.Error()
		w.err.Store(&msg)
		w.log.Error("open after rotation", "file", f.path, "err", err)
	}
	f.size = 0
	f.partial = false
	w.m.Rotations.WithLabelValues(reason).Inc()
	w.log.Info("rotated", "file", f.path, "reason", reason)
	if f.comp != nil {
		w.comps.poke(f.comp)
	}
}

// reopen closes the files and opens whatever is at their paths now: after
// an external logrotate has moved them away, new files are created. The
// files of a file per source are opened again when next written.
func (w *Writer) reopen() {
	if w.main == nil {
		w.syncAll() // the files moved away keep what was written to them
		for w.opened.Len() > 0 {
			w.closeFile(w.opened.Back().Value.(*logFile), "reopen")
		}
		w.m.Reopens.Inc()
		w.log.Info("reopened", "files", w.opt.Path)
		return
	}
	f := w.main
	w.sync(f)
	if err := f.lj.Close(); err != nil {
		w.log.Error("close for reopen", "file", f.path, "err", err)
	}
	if err := f.open(false); err != nil {
		msg := err.Error()
		w.err.Store(&msg)
		w.m.WriteErrors.Inc()
		w.log.Error("reopen failed", "file", f.path, "err", err)
		return
	}
	f.partial = false
	w.m.Reopens.Inc()
	w.log.Info("reopened", "file", f.path)
}

// Alive reports whether Run's loop has turned within the last d.
func (w *Writer) Alive(d time.Duration) bool {
	return time.Since(time.Unix(0, w.alive.Load())) < d
}

// LastTurn is when the writer's loop last turned, in Unix seconds: at
// least once a second while it is not stuck (when the writer was made,
// before its loop started).
func (w *Writer) LastTurn() float64 {
	return float64(w.alive.Load()) / 1e9
}

// Close closes the files of a writer whose Run never started; Run closes
// its own.
func (w *Writer) Close() error {
	if w.main != nil {
		return w.main.close()
	}
	return w.dirDesc.Close()
}
