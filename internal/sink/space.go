package sink

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// statfsWait bounds how long a scrape waits for statfs: on a hung network
// filesystem it never returns, and the other metrics must still be served.
const statfsWait = time.Second

// spaceCollector reports the filesystem that holds the log directory, as
// the daemon's own user sees it, so that an alert can fire before a full
// disk turns into write errors, also on hosts without node_exporter.
type spaceCollector struct {
	dir         string
	avail, size *prometheus.Desc

	mu       sync.Mutex
	inFlight chan struct{} // closed when the statfs under way returns; nil: none
	last     unix.Statfs_t
	lastErr  error
}

// NewSpaceCollector is aggregator_log_filesystem_avail_bytes and
// aggregator_log_filesystem_size_bytes for the filesystem of dir, read at
// each scrape with one statfs. A statfs that fails, or has not returned
// within a second, leaves both out of that scrape, and at most one is
// under way at a time.
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
	c.mu.Lock()
	done := c.inFlight
	if done == nil {
		done = make(chan struct{})
		c.inFlight = done
		go func() {
			var st unix.Statfs_t
			err := unix.Statfs(c.dir, &st)
			c.mu.Lock()
			c.last, c.lastErr, c.inFlight = st, err, nil
			c.mu.Unlock()
			close(done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-done:
	case <-time.After(statfsWait):
		return
	}
	c.mu.Lock()
	st, err := c.last, c.lastErr
	c.mu.Unlock()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.avail, prometheus.GaugeValue, float64(st.Bavail)*float64(st.Bsize))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.Blocks)*float64(st.Bsize))
}
