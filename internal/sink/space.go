package sink

import (
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// spaceCollector reports the filesystem that holds the log directory, as
// the daemon's own user sees it, so that an alert can fire before a full
// disk turns into write errors, also on hosts without node_exporter.
type spaceCollector struct {
	dir         string
	avail, size *prometheus.Desc
}

// NewSpaceCollector is aggregator_log_filesystem_avail_bytes and
// aggregator_log_filesystem_size_bytes for the filesystem of dir, read at
// each scrape (one statfs).
func NewSpaceCollector(dir string) prometheus.Collector {
	return &spaceCollector{
		dir: dir,
		avail: prometheus.NewDesc("aggregator_log_filesystem_avail_bytes",
			"Bytes the daemon can still write on the filesystem of its log directory (statfs f_bavail: without the blocks reserved for root).", nil, nil),
		size: prometheus.NewDesc("aggregator_log_filesystem_size_bytes",
			"Size of the filesystem of the log directory.", nil, nil),
	}
}

func (c *spaceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.avail
	ch <- c.size
}

func (c *spaceCollector) Collect(ch chan<- prometheus.Metric) {
	var st unix.Statfs_t
	if err := unix.Statfs(c.dir, &st); err != nil {
		ch <- prometheus.NewInvalidMetric(c.avail, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.avail, prometheus.GaugeValue, float64(st.Bavail)*float64(st.Bsize))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.Blocks)*float64(st.Bsize))
}
