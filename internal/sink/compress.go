package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"aggregator/internal/statefile"
)

// Codec is how rotated backups are compressed: "gzip", "zstd", or "" for
// not at all.
type Codec string

// Codecs the daemon writes, and the suffixes of their files.
const (
	Gzip Codec = "gzip"
	Zstd Codec = "zstd"
	None Codec = ""
)

// ParseCodec reads AGG_COMPRESS: gzip, zstd or false; true means gzip.
func ParseCodec(s string) (Codec, error) {
	switch strings.ToLower(s) {
	case "gzip", "true":
		return Gzip, nil
	case "zstd":
		return Zstd, nil
	case "false", "none":
		return None, nil
	}
	return None, fmt.Errorf("%q: want gzip, zstd or false", s)
}

// compressedSuffixes are the endings of compressed backups, whatever the
// codec in use: a daemon switched from one to the other still reads,
// counts and prunes the backups of before.
var compressedSuffixes = []string{".gz", ".zst"}

func (c Codec) suffix() string {
	if c == Zstd {
		return ".zst"
	}
	return ".gz"
}

// writer starts compressing into dst. Both run at their fastest level:
// compression must keep up with receiving on the same cores.
func (c Codec) writer(dst io.Writer) (io.WriteCloser, error) {
	if c == Zstd {
		return zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true)) // a log compresses as well with 1 MiB of window, and peak RSS stays low
	}
	return gzip.NewWriterLevel(dst, gzip.BestSpeed)
}

// decompress reads a compressed backup; name tells the codec.
func decompress(name string, r io.Reader) (io.ReadCloser, error) {
	if strings.HasSuffix(name, ".zst") {
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return gzip.NewReader(r)
}

// compressor compresses the rotated backups of one log file, in the
// background (see compressors), so that the write path never waits on
// compression, and then applies the retention limits. lumberjack can
// compress too, but only with the standard library's gzip at its default
// level, in a goroutine nobody can wait for; at a few hundred MB/s of logs
// that falls behind and a stop could leave a half-written .gz. Here a
// backup becomes name.gz.tmp (or .zst.tmp), is renamed to name.gz when
// complete, and only then is the original removed: at every moment each
// line is in exactly one complete file. Retention is done here too, not by
// lumberjack, which knows only .gz backups.
type compressor struct {
	dir        string
	pattern    backups // the names of uncompressed backups
	codec      Codec   // None: retention only
	maxBackups int
	maxAge     time.Duration
	keepFrom   func() time.Time // backups rotated at or after this are not yet forwarded; nil or zero: none
	m          *Metrics
	log        *slog.Logger

	queued bool // poked and not yet passed over: guarded by compressors.mu

	// Owned by the compressors' goroutine.
	started bool // its leftover temporary files are removed
	waiting int  // backups it last found uncompressed
}

// backups matches lumberjack's backup names for a live file:
// "<name>-2006-01-02T15-04-05.000<ext>". A plain comparison rather than a
// regular expression: with a file per source there is one per file.
type backups struct{ prefix, ext string }

func backupPattern(path string) backups {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	return backups{prefix: base[:len(base)-len(ext)] + "-", ext: ext}
}

// stampLayout is the time lumberjack puts in a backup's name.
const stampLayout = "2006-01-02T15-04-05.000"

// MatchString reports whether name is one of the backups.
func (b backups) MatchString(name string) bool {
	stamp, ok := strings.CutPrefix(name, b.prefix)
	if !ok {
		return false
	}
	if stamp, ok = strings.CutSuffix(stamp, b.ext); !ok || len(stamp) != len(stampLayout) {
		return false
	}
	for i := range len(stampLayout) {
		c, l := stamp[i], stampLayout[i]
		if digit := '0' <= l && l <= '9'; digit != ('0' <= c && c <= '9') || !digit && c != l {
			return false
		}
	}
	return true
}

func newCompressor(path string, codec Codec, maxBackups, maxAgeDays int, keepFrom func() time.Time, m *Metrics, log *slog.Logger) *compressor {
	return &compressor{
		keepFrom:   keepFrom,
		dir:        filepath.Dir(path),
		pattern:    backupPattern(path),
		codec:      codec,
		maxBackups: maxBackups,
		maxAge:     time.Duration(maxAgeDays) * 24 * time.Hour,
		m:          m,
		log:        log,
	}
}

// compressors is the one goroutine that compresses and prunes the backups
// of every log file, one file's pass at a time: with a file per source
// there may be thousands, and compression competes with receiving for the
// same cores anyway.
type compressors struct {
	mu      sync.Mutex
	queue   []*compressor // poked, not yet passed over
	wake    chan struct{}
	done    chan struct{}
	waiting int // uncompressed backups over all files, for the gauge
	m       *Metrics
}

func newCompressors(m *Metrics) *compressors {
	return &compressors{wake: make(chan struct{}, 1), done: make(chan struct{}), m: m}
}

// poke asks for a pass over c's backups; it never blocks.
func (cs *compressors) poke(c *compressor) {
	cs.mu.Lock()
	if !c.queued {
		c.queued = true
		cs.queue = append(cs.queue, c)
	}
	cs.mu.Unlock()
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

// next takes the file poked longest ago, or nil.
func (cs *compressors) next() *compressor {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.queue) == 0 {
		return nil
	}
	c := cs.queue[0]
	cs.queue[0] = nil
	cs.queue = cs.queue[1:]
	c.queued = false
	return c
}

// run passes over every poked file until ctx is done; when stop is
// closed, what was poked until then is passed over first (bounded by
// ctx).
func (cs *compressors) run(ctx context.Context, stop <-chan struct{}) {
	defer close(cs.done)
	for {
		for c := cs.next(); c != nil && ctx.Err() == nil; c = cs.next() {
			cs.pass(ctx, c)
		}
		select {
		case <-cs.wake:
		case <-stop:
			for c := cs.next(); c != nil && ctx.Err() == nil; c = cs.next() {
				cs.pass(ctx, c) // what the last rotations left
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

func (cs *compressors) pass(ctx context.Context, c *compressor) {
	if !c.started {
		c.started = true
		c.removeTemps()
	}
	before := c.waiting
	c.pass(ctx)
	cs.waiting += c.waiting - before
	cs.m.CompressPending.Set(float64(cs.waiting))
}

func (c *compressor) pass(ctx context.Context) {
	defer c.prune()
	if c.codec == None {
		return
	}
	for {
		pending := c.pending()
		c.waiting = len(pending)
		if len(pending) == 0 || ctx.Err() != nil {
			return
		}
		// Oldest first; a failing file is left for the next pass so a bad
		// one cannot spin the loop.
		failed := 0
		for _, name := range pending {
			if ctx.Err() != nil {
				return
			}
			if err := c.compress(ctx, name); err != nil {
				failed++
				c.m.CompressErrors.Inc()
				c.log.Error("compress backup", "file", name, "err", err)
			} else {
				c.m.Compressed.Inc()
			}
		}
		if failed > 0 {
			return
		}
	}
}

// pending lists uncompressed backups, oldest first (names sort by time).
// A directory that cannot be listed is counted and logged as a
// compression error: nothing is compressed until it can.
func (c *compressor) pending() []string {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		c.m.CompressErrors.Inc()
		c.log.Error("list backups to compress", "dir", c.dir, "err", err)
		return nil
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && c.pattern.MatchString(e.Name()) {
			names = append(names, filepath.Join(c.dir, e.Name()))
		}
	}
	sort.Strings(names)
	return names
}

func (c *compressor) removeTemps() {
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		n := e.Name()
		for _, suffix := range compressedSuffixes {
			if base, ok := strings.CutSuffix(n, suffix+".tmp"); ok && c.pattern.MatchString(base) {
				os.Remove(filepath.Join(c.dir, n))
			}
		}
	}
}

// compress writes name.gz (or .zst) through a temporary file and removes
// name.
func (c *compressor) compress(ctx context.Context, name string) (err error) {
	src, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed by the backup limit meanwhile
	}
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}
	tmp := name + c.codec.suffix() + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, info.Mode().Perm())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			dst.Close()
			os.Remove(tmp)
		}
	}()
	zw, err := c.codec.writer(dst)
	if err != nil {
		return err
	}
	trailer, err := compressFramed(zw, dst, c.codec, ctxReader{ctx, src})
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if _, err = dst.Write(trailer); err != nil { // a window that misses it skips it (see BackupSpan)
		return err
	}
	// The compressed copy is on disk, under its name, before the original
	// goes: a power cut leaves one or the other, whole.
	if err = errors.Join(dst.Sync(), dst.Close()); err != nil {
		return err
	}
	if err = os.Rename(tmp, name+c.codec.suffix()); err != nil {
		return err
	}
	if err = statefile.SyncDir(c.dir); err != nil {
		return err
	}
	if err = os.Remove(name); err != nil {
		return err
	}
	return statefile.SyncDir(c.dir)
}

// unforwardedFactor: backups not yet forwarded are kept past the limits,
// up to this many times AGG_MAX_BACKUPS; only then are they removed,
// counted and logged (a NATS outage of days must not fill the disk).
const unforwardedFactor = 10

// prune removes the oldest backups beyond maxBackups, and those rotated
// more than maxAge ago (0: no limit), as lumberjack would, counting
// compressed ones of either codec. A backup the forwarder has not sent yet
// stays, unless there are unforwardedFactor times maxBackups.
func (c *compressor) prune() {
	if c.maxBackups == 0 && c.maxAge == 0 {
		return
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		c.m.RetentionErrors.Inc()
		c.log.Error("list backups for retention", "dir", c.dir, "err", err)
		return
	}
	type backup struct {
		name string
		at   time.Time
	}
	var backups []backup
	for _, e := range entries {
		base := e.Name()
		for _, suffix := range compressedSuffixes {
			base = strings.TrimSuffix(base, suffix)
		}
		if !c.pattern.MatchString(base) {
			continue
		}
		at, err := backupTime(base)
		if err != nil {
			continue
		}
		backups = append(backups, backup{e.Name(), at})
	}
	sort.Slice(backups, func(i, j int) bool { return backups[i].at.After(backups[j].at) }) // newest first
	var keepFrom time.Time
	if c.keepFrom != nil {
		keepFrom = c.keepFrom()
	}
	for i, b := range backups {
		if !(c.maxBackups > 0 && i >= c.maxBackups) && !(c.maxAge > 0 && time.Since(b.at) > c.maxAge) {
			continue
		}
		unforwarded := !keepFrom.IsZero() && !b.at.Before(keepFrom)
		if unforwarded && (c.maxBackups == 0 || i < unforwardedFactor*c.maxBackups) {
			continue // the forwarder has not sent it yet
		}
		if err := os.Remove(filepath.Join(c.dir, b.name)); err != nil {
			c.m.RetentionErrors.Inc()
			c.log.Error("remove backup", "file", b.name, "err", err)
			continue
		}
		c.m.Pruned.Inc()
		if unforwarded {
			c.m.PrunedUnforwarded.Inc()
			c.log.Error("backup removed before it was forwarded: too many backups wait for forwarding", "file", b.name,
				"limit", unforwardedFactor*c.maxBackups)
		}
	}
}

// BackupTime is the rotation time in a backup's name.
func BackupTime(name string) (time.Time, error) {
	base := filepath.Base(name)
	for _, suffix := range compressedSuffixes {
		base = strings.TrimSuffix(base, suffix)
	}
	return backupTime(base)
}

// backupTime is the rotation time lumberjack put in a backup's name.
func backupTime(name string) (time.Time, error) {
	ext := filepath.Ext(name)
	stamp := strings.TrimSuffix(name, ext)
	if len(stamp) < len("2006-01-02T15-04-05.000") {
		return time.Time{}, errors.New("no time")
	}
	return time.Parse("2006-01-02T15-04-05.000", stamp[len(stamp)-len("2006-01-02T15-04-05.000"):])
}

// ctxReader stops a long copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
