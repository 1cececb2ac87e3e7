package sink

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// What retention cannot do is counted, not passed over: a backup it could
// not remove, and a directory it could not list, would otherwise fill the
// disk with nothing to show for it.
func TestRetentionErrorsAreCounted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subscriber.log")
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "d"}, []string{"reason"})
	m := NewMetrics(prometheus.NewRegistry(), dropped)
	for _, stamp := range []string{"2026-12-01T00-00-00.000", "2026-12-02T00-00-00.000", "2026-12-03T00-00-00.000"} {
		if err := os.WriteFile(filepath.Join(dir, "subscriber-"+stamp+".log.gz"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The oldest cannot be removed: a directory that is not empty has its
	// name (what a removal refused by the filesystem looks like, root or not).
	stuck := filepath.Join(dir, "subscriber-2026-11-30T00-00-00.000.log.gz")
	if err := os.MkdirAll(filepath.Join(stuck, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCompressor(path, Gzip, 1, 0, nil, m, slog.New(slog.DiscardHandler))
	c.prune()
	if got := testutil.ToFloat64(m.Pruned); got != 2 {
		t.Errorf("%v backups removed, want 2", got)
	}
	if got := testutil.ToFloat64(m.RetentionErrors); got != 1 {
		t.Errorf("%v retention errors, want 1 (the backup that could not be removed)", got)
	}

	os.RemoveAll(dir)
	c.prune()
	c.pending()
	if got := testutil.ToFloat64(m.RetentionErrors); got != 2 {
		t.Errorf("%v retention errors after the directory went, want 2", got)
	}
	if got := testutil.ToFloat64(m.CompressErrors); got != 1 {
		t.Errorf("%v compression errors after the directory went, want 1", got)
	}
}
