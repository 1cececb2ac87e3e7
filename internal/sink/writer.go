// Package sink writes received records as lines to a rotating log file.
package sink

import (
	"bytes"
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
	"gopkg.in/natefinch/lumberjack.v2"

	"aggregator/internal/ingest"
	"aggregator/internal/statefile"
)

// Options configure the writer.
type Options struct {
	// Path of the live file; backups go next to it.
	Path     string
	Format   Format
	Location *time.Location // time zone of the timestamps; nil means UTC
	// MaxSizeMB: the live file is rotated before it would grow past this.
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
	// has gathered, or sooner (see FlushInterval).
	BufferBytes int
	// SyncInterval is the longest written lines wait before the file is
	// synced (fdatasync); 0 syncs only at rotation, at stop and for
	// Durable batches. A power cut loses at most this much.
	SyncInterval time.Duration
	// Written, when set, is called after each write that reached the
	// file; it must not block (the forwarder's Notify).
	Written func()
	// Unforwarded, when set, says from which rotation time on backups are
	// not yet forwarded: retention keeps them (see compressor.prune).
	Unforwarded func() time.Time
}

// DefaultBufferBytes is the write batch size when Options leave it 0.
const DefaultBufferBytes = 256 << 10

// compressWait bounds how long Run waits, on stop, for the compression of
// the last backups.
const compressWait = 5 * time.Second

// Writer owns the log file. Run is its only goroutine: it encodes records,
// writes whole lines, rotates and reopens, all in one loop, so that no lock
// is taken per line and a rotation can never fall inside a line.
type Writer struct {
	opt      Options
	lj       *lumberjack.Logger
	enc      encoder
	maxBytes int64
	m        *Metrics
	log      *slog.Logger
	comp     *compressor

	// Owned by Run.
	buf        []byte
	lines      int   // lines in buf
	size       int64 // bytes in the live file, mirrored to rotate before lumberjack would
	partial    bool  // a failed write left the file without its last newline
	lastRotate time.Time
	nextRotate time.Time
	lastErrLog time.Time
	done       []func(ingest.Written) // Done callbacks of batches encoded and not yet flushed
	live       *os.File               // the live file, opened beside lumberjack's: what sync syncs
	inode      uint64                 // of live
	dirty      bool                   // written since the last sync
	wantSync   bool                   // a Durable batch is in the buffer
	durableAt  int64                  // where the Durable batch in the buffer starts; -1 when none is
	lastSync   time.Time

	err   atomic.Pointer[string] // last write error, for readiness; nil when healthy
	alive atomic.Int64           // Unix nanoseconds of the loop's last tick, for the watchdog
}

// New opens (creates if need be) the live file, so that a path that cannot
// be written fails at start-up.
func New(opt Options, m *Metrics, log *slog.Logger) (*Writer, error) {
	if opt.BufferBytes <= 0 {
		opt.BufferBytes = DefaultBufferBytes
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 100 * time.Millisecond
	}
	w := &Writer{
		opt: opt,
		lj: &lumberjack.Logger{
			Filename:  opt.Path,
			MaxSize:   opt.MaxSizeMB,
			LocalTime: false,
			Compress:  false, // compression and retention: see compressor
		},
		enc:       encoder{format: opt.Format, clock: newClock(opt.Location)},
		maxBytes:  int64(opt.MaxSizeMB) << 20,
		m:         m,
		log:       log,
		buf:       make([]byte, 0, opt.BufferBytes+opt.BufferBytes/4),
		durableAt: -1,
	}
	w.comp = newCompressor(opt.Path, opt.Compress, opt.MaxBackups, opt.MaxAgeDays, opt.Unforwarded, m, log)
	if err := w.open(); err != nil {
		return nil, err
	}
	if opt.RotateEvery > 0 {
		w.nextRotate = nextBoundary(time.Now(), opt.RotateEvery)
	}
	return w, nil
}

// open opens the file at the path (creating it) beside lumberjack, which
// opens lazily on the first write: a path that cannot be written fails now
// rather than at the first message, and the writer has a descriptor of its
// own to sync, since lumberjack exposes none. Both name the same file:
// only Run's goroutine rotates and reopens.
func (w *Writer) open() error {
	f, err := os.OpenFile(w.opt.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w", w.opt.Path, err)
	}
	info, err := f.Stat()
	if err == nil {
		// A file just created exists after a power cut only once its
		// directory entry is synced.
		err = statefile.SyncDir(filepath.Dir(w.opt.Path))
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("open %s: %w", w.opt.Path, err)
	}
	if w.live != nil {
		w.live.Close()
	}
	w.live, w.inode, w.dirty = f, Inode(info), false
	w.size = info.Size()
	return nil
}

// Inode is the inode number of a file, 0 where the system has none.
func Inode(info os.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// sync makes what was written to the live file durable. fdatasync, not
// fsync: the size is synced with the data, the times are not needed.
func (w *Writer) sync() error {
	if !w.dirty {
		return nil
	}
	start := time.Now()
	err := syscall.Fdatasync(int(w.live.Fd()))
	w.lastSync = time.Now()
	w.m.SyncSeconds.Observe(w.lastSync.Sub(start).Seconds())
	if err != nil {
		err = fmt.Errorf("sync %s: %w", w.opt.Path, err)
		w.failed(w.m.SyncErrors, "sync failed", err)
		return err
	}
	w.dirty = false
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
// the file and waits (bounded) for the last backups to be compressed.
// reopen asks for the file to be closed and opened again (SIGHUP).
func (w *Writer) Run(q *ingest.Queue, reopen <-chan struct{}) error {
	var stopComp chan struct{}
	compCtx, cancelComp := context.WithCancel(context.Background())
	defer cancelComp()
	if w.comp != nil {
		stopComp = make(chan struct{})
		go w.comp.run(compCtx, stopComp)
	}
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
	for {
		select {
		case b, ok := <-q.C:
			if !ok {
				w.flush()
				w.sync() // a clean stop leaves everything on disk
				err := errors.Join(w.lj.Close(), w.live.Close())
				w.stopCompressor(stopComp, cancelComp)
				if err != nil {
					return fmt.Errorf("close %s: %w", w.opt.Path, err)
				}
				return nil
			}
			q.Taken(b)
			w.encode(b)
			q.Recycle(b)
			if len(q.C) == 0 {
				w.flush() // nothing more waiting: let the lines reach the file now
			}
		case now := <-tick.C:
			w.alive.Store(now.UnixNano())
			w.flush()
			if w.opt.SyncInterval > 0 && w.dirty && now.Sub(w.lastSync) >= w.opt.SyncInterval {
				w.sync()
			}
			if !w.nextRotate.IsZero() && !now.Before(w.nextRotate) {
				if w.size > 0 { // an idle period leaves no empty backups behind
					w.rotate("time")
				}
				w.nextRotate = nextBoundary(now, w.opt.RotateEvery)
			}
		case <-reopen:
			w.flush()
			w.reopen()
		}
	}
}

func (w *Writer) stopCompressor(stop chan struct{}, cancel context.CancelFunc) {
	if w.comp == nil {
		return
	}
	close(stop)
	select {
	case <-w.comp.done:
	case <-time.After(compressWait):
		cancel()
		<-w.comp.done
		w.log.Warn("stopped before every backup was compressed; the rest is compressed at the next start")
	}
}

// encode appends b's records as lines, writing whenever the buffer is full.
func (w *Writer) encode(b *ingest.Batch) {
	if b.Durable {
		w.encodeDurable(b)
		return
	}
	w.appendRecords(b, true)
	if b.Done != nil {
		w.done = append(w.done, b.Done)
	}
}

// encodeDurable writes a Durable batch by itself: in one write, to one
// file (started first when the batch would not fit in this one), synced
// before its Done. A batch whose write or sync fails is cut back out of
// the file, so that it is there whole or not at all; it comes again.
func (w *Writer) encodeDurable(b *ingest.Batch) {
	w.flush()
	if need := int64(b.Bytes + len(b.Records)); w.size > 0 && w.size+need > w.maxBytes {
		w.rotate("size")
	}
	w.durableAt = w.size
	w.appendRecords(b, false)
	if b.Done != nil {
		w.done = append(w.done, b.Done)
	}
	w.wantSync = true
	w.flush()
}

// appendRecords encodes b's records into the buffer; with flushFull, a
// full buffer is written on the way.
func (w *Writer) appendRecords(b *ingest.Batch, flushFull bool) {
	for i := range b.Records {
		start := len(w.buf)
		if b.Raw {
			w.buf = append(append(w.buf, b.Records[i].Frames[0]...), '\n')
		} else {
			w.buf = w.enc.appendLine(w.buf, b.Records[i].Endpoint, &b.Records[i])
		}
		if int64(len(w.buf)) > w.maxBytes {
			line := w.buf[start:]
			w.buf = w.buf[:start]
			if int64(len(line)) > w.maxBytes {
				w.m.droppedTooLong.Inc() // could never fit in a file
				continue
			}
			// Rare: a huge line after a full buffer; one write may not
			// exceed the file size, so write the two apart.
			line = bytes.Clone(line)
			w.flush()
			w.buf = append(w.buf, line...)
		}
		w.lines++
		if flushFull && len(w.buf) >= w.opt.BufferBytes {
			w.flush()
		}
	}
}

// flush writes the buffer. It holds whole lines only, and the file is
// rotated before a write that would take it past its maximum size, so a
// line never straddles two files.
func (w *Writer) flush() {
	if len(w.buf) == 0 {
		w.finish(nil)
		return
	}
	if w.size+int64(len(w.buf)) > w.maxBytes {
		w.rotate("size")
	}
	if w.partial {
		w.buf = append(w.buf, '\n') // end the cut line, then rotate the buffer into place
		copy(w.buf[1:], w.buf[:len(w.buf)-1])
		w.buf[0] = '\n'
	}
	n, err := w.lj.Write(w.buf)
	w.size += int64(n)
	w.dirty = w.dirty || n > 0
	switch {
	case err != nil && w.durableAt >= 0:
		w.failed(w.m.WriteErrors, "write failed; the batch comes again", err)
		w.partial = n > 0 && w.buf[n-1] != '\n'
		w.cutBack()
	case err != nil:
		w.writeFailed(err, n)
	default:
		w.partial = false
		w.err.Store(nil)
		w.m.Lines.Add(float64(w.lines))
		if w.opt.Written != nil {
			w.opt.Written()
		}
	}
	w.m.Bytes.Add(float64(n))
	w.buf = w.buf[:0]
	w.lines = 0
	w.finish(err)
}

// finish tells the batches whose lines were in the buffer how the write
// went.
func (w *Writer) finish(err error) {
	if err == nil && w.wantSync {
		if err = w.sync(); err != nil && w.durableAt >= 0 {
			w.cutBack()
		}
	}
	w.wantSync, w.durableAt = false, -1
	for _, done := range w.done {
		done(ingest.Written{Err: err, Inode: w.inode, Size: w.size})
	}
	clear(w.done)
	w.done = w.done[:0]
}

// cutBack removes from the file what a failed Durable batch wrote of
// itself. lumberjack is closed so that it opens the file again and learns
// its size.
func (w *Writer) cutBack() {
	if err := w.live.Truncate(w.durableAt); err != nil {
		w.log.Error("cut back a failed write", "file", w.opt.Path, "err", err)
		return
	}
	w.lj.Close()
	w.size, w.partial = w.durableAt, false
}

// failed records an error of the file for readiness, counts it in c, and
// logs it once per interval at most: a full disk fails every write.
func (w *Writer) failed(c prometheus.Counter, what string, err error, attrs ...any) {
	c.Inc()
	msg := err.Error()
	w.err.Store(&msg)
	if now := time.Now(); now.Sub(w.lastErrLog) >= 10*time.Second {
		w.lastErrLog = now
		w.log.Error(what, append([]any{"file", w.opt.Path, "err", err}, attrs...)...)
	}
}

// writeFailed accounts for a failed write: the lines not written are
// counted as dropped, and the file is marked so that the next write first
// ends any line cut in the middle.
func (w *Writer) writeFailed(err error, n int) {
	lost := bytes.Count(w.buf[n:], []byte{'\n'})
	w.m.droppedWrite.Add(float64(lost))
	w.m.Lines.Add(float64(w.lines - lost))
	if n > 0 && w.buf[n-1] != '\n' {
		w.partial = true
	}
	w.failed(w.m.WriteErrors, "write failed; lines dropped", err, "lines", lost)
}

// rotate moves the live file aside and starts a new one.
func (w *Writer) rotate(reason string) {
	// lumberjack names a backup after the current millisecond; a second
	// rotation within the same one would reuse the name and replace it.
	if d := time.Millisecond - time.Since(w.lastRotate); d > 0 {
		time.Sleep(d)
	}
	// The backup keeps its lines through a power cut: synced before the
	// rename, which is synced after it.
	w.sync()
	if err := w.lj.Rotate(); err != nil {
		msg := err.Error()
		w.err.Store(&msg)
		w.m.WriteErrors.Inc()
		w.log.Error("rotate failed", "file", w.opt.Path, "reason", reason, "err", err)
		return
	}
	w.lastRotate = time.Now()
	if err := w.open(); err != nil { // lumberjack's new file, and the rename, synced
		msg := err.Error()
		w.err.Store(&msg)
		w.log.Error("open after rotation", "file", w.opt.Path, "err", err)
	}
	w.size = 0
	w.partial = false
	w.m.Rotations.WithLabelValues(reason).Inc()
	w.log.Info("rotated", "file", w.opt.Path, "reason", reason)
	if w.comp != nil {
		w.comp.poke()
	}
}

// reopen closes the file and opens whatever is at the path now: after an
// external logrotate has moved it away, a new file is created.
func (w *Writer) reopen() {
	w.sync() // the file moved away keeps what was written to it
	if err := w.lj.Close(); err != nil {
		w.log.Error("close for reopen", "file", w.opt.Path, "err", err)
	}
	if err := w.open(); err != nil {
		msg := err.Error()
		w.err.Store(&msg)
		w.m.WriteErrors.Inc()
		w.log.Error("reopen failed", "file", w.opt.Path, "err", err)
		return
	}
	w.partial = false
	w.m.Reopens.Inc()
	w.log.Info("reopened", "file", w.opt.Path)
}

// Alive reports whether Run's loop has turned within the last d.
func (w *Writer) Alive(d time.Duration) bool {
	return time.Since(time.Unix(0, w.alive.Load())) < d
}

// Close closes the file of a writer whose Run never started; Run closes
// its own.
func (w *Writer) Close() error { return errors.Join(w.lj.Close(), w.live.Close()) }
