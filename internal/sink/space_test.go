package sink

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The log filesystem's space is what statfs says; a directory that is gone
// leaves the two metrics out rather than failing the whole scrape.
func TestSpaceCollector(t *testing.T) {
	dir := t.TempDir()
	c := NewSpaceCollector(dir)
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Fatalf("%d metrics, want 2", n)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		values[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	avail, size := values["aggregator_log_filesystem_avail_bytes"], values["aggregator_log_filesystem_size_bytes"]
	if size <= 0 || avail <= 0 || avail > size {
		t.Errorf("avail %v of size %v", avail, size)
	}

	gone := filepath.Join(dir, "gone")
	os.Mkdir(gone, 0o755)
	c = NewSpaceCollector(gone)
	os.Remove(gone)
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if families, err := reg.Gather(); err != nil || len(families) != 0 {
		t.Errorf("a directory that is gone: %d families, %v; want none and no error", len(families), err)
	}
}
