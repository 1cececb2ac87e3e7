package forward

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the forwarder's instruments.
type Metrics struct {
	Lines, Bytes prometheus.Counter // acknowledged by JetStream
	Retries      prometheus.Counter
	Duplicates   prometheus.Counter // chunks JetStream already had (sent again)
	SegmentsLost prometheus.Counter // files deleted before they were forwarded
	TooLong      prometheus.Counter // lines longer than the server's max_payload
}

// NewMetrics registers the forwarder's metrics; lagSeconds reports the
// age of the oldest line not yet acknowledged, lagBytes how much waits.
func NewMetrics(reg prometheus.Registerer, lagSeconds, lagBytes func() float64) *Metrics {
	m := &Metrics{
		Lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_forward_lines_total",
			Help: "Lines forwarded to JetStream and acknowledged.",
		}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_forward_bytes_total",
			Help: "Bytes of lines forwarded to JetStream and acknowledged.",
		}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_forward_retries_total",
			Help: "Windows of chunks sent again after a failure (NATS unreachable, no acknowledgement, stream missing).",
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_forward_duplicates_total",
			Help: "Chunks sent again that JetStream already held (stored once, by message ID).",
		}),
		SegmentsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_forward_files_lost_total",
			Help: "Files of the log deleted before they were forwarded.",
		}),
		TooLong: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_forward_lines_too_long_total",
			Help: "Lines longer than the NATS server takes (its max_payload): written, not forwarded.",
		}),
	}
	reg.MustRegister(m.Lines, m.Bytes, m.Retries, m.Duplicates, m.SegmentsLost, m.TooLong,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aggregator_forward_lag_bytes",
			Help: "Bytes written and not yet acknowledged by JetStream, over all files, as of each file's last window.",
		}, lagBytes),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aggregator_forward_lag_seconds",
			Help: "How long written lines have waited for JetStream's acknowledgement; 0 when all are acknowledged.",
		}, lagSeconds))
	return m
}
