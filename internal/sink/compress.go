package sink

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// compressor gzips rotated backups in its own goroutine, so that the write
// path never waits on compression. lumberjack can compress too, but only
// with the standard library's default level, in a goroutine nobody can
// wait for; at a few hundred MB/s of logs that falls behind and a stop
// could leave a half-written .gz. Here a backup becomes name.gz.tmp, is
// renamed to name.gz when complete, and only then is the original removed:
// at every moment each line is in exactly one complete file.
type compressor struct {
	dir     string
	pattern *regexp.Regexp // matches the names of uncompressed backups
	level   int
	wake    chan struct{}
	done    chan struct{}
	m       *Metrics
	log     *slog.Logger
}

// backupPattern matches lumberjack's backup names for live file path:
// "<name>-2006-01-02T15-04-05.000<ext>".
func backupPattern(path string) *regexp.Regexp {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	prefix := base[:len(base)-len(ext)]
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) +
		`-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}` + regexp.QuoteMeta(ext) + `$`)
}

func newCompressor(path string, m *Metrics, log *slog.Logger) *compressor {
	return &compressor{
		dir:     filepath.Dir(path),
		pattern: backupPattern(path),
		level:   gzip.BestSpeed,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		m:       m,
		log:     log,
	}
}

// poke asks for a pass over the directory; it never blocks.
func (c *compressor) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run compresses backups whenever poked, until ctx is done; the pass under
// way when stop is closed is finished first (it is bounded by ctx).
func (c *compressor) run(ctx context.Context, stop <-chan struct{}) {
	defer close(c.done)
	c.removeTemps()
	for {
		c.pass(ctx)
		select {
		case <-c.wake:
		case <-stop:
			c.pass(ctx) // what the last rotation left
			return
		case <-ctx.Done():
			return
		}
	}
}

func (c *compressor) pass(ctx context.Context) {
	for {
		pending := c.pending()
		c.m.CompressPending.Set(float64(len(pending)))
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
func (c *compressor) pending() []string {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
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
		if base, ok := strings.CutSuffix(n, ".gz.tmp"); ok && c.pattern.MatchString(base) {
			os.Remove(filepath.Join(c.dir, n))
		}
	}
}

// compress writes name.gz through a temporary file and removes name.
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
	tmp := name + ".gz.tmp"
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
	zw, err := gzip.NewWriterLevel(dst, c.level)
	if err != nil {
		return err
	}
	if _, err = io.Copy(zw, ctxReader{ctx, src}); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if err = zw.Close(); err != nil {
		return err
	}
	if err = dst.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, name+".gz"); err != nil {
		return err
	}
	return os.Remove(name)
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
