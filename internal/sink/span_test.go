package sink

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
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
