package ingest

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the ingest side's instruments. Labelled children are resolved
// once per subscriber (see endpointMetrics), never per message.
type Metrics struct {
	Received    *prometheus.CounterVec
	Bytes       *prometheus.CounterVec
	Truncated   *prometheus.CounterVec
	Events      *prometheus.CounterVec
	LastMessage prometheus.Gauge
	// Dropped counts messages received but never written, by reason. The
	// sink adds its own reasons to the same family.
	Dropped *prometheus.CounterVec
}

// Drop reasons used by ingest.
const (
	DropSinkFailed = "sink_failed"
)

// NewMetrics registers the ingest metrics with reg. queue, when not nil, is
// exported as the number of records waiting for the sink.
func NewMetrics(reg prometheus.Registerer, queue *Queue) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_messages_received_total",
			Help: "Messages received from publishers, by configured endpoint. A multipart message counts once.",
		}, []string{"endpoint"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_received_bytes_total",
			Help: "Payload bytes received (all frames, after truncation), by configured endpoint.",
		}, []string{"endpoint"}),
		Truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_messages_truncated_total",
			Help: "Messages longer than the maximum message size, cut to it, by configured endpoint.",
		}, []string{"endpoint"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_connection_events_total",
			Help: "Socket events reported by libzmq (connected, accepted, disconnected, connect_retried, ...), by configured endpoint.",
		}, []string{"endpoint", "event"}),
		LastMessage: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aggregator_last_message_timestamp_seconds",
			Help: "Receive time of the newest message, as a Unix timestamp.",
		}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_messages_dropped_total",
			Help: "Messages received but not written, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.Received, m.Bytes, m.Truncated, m.Events, m.LastMessage, m.Dropped)
	if queue != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aggregator_queue_records",
			Help: "Records received and waiting to be written.",
		}, func() float64 { return float64(queue.Waiting()) }))
	}
	return m
}

// endpointMetrics are one subscriber's resolved children.
type endpointMetrics struct {
	received, bytes, truncated prometheus.Counter
	dropped                    prometheus.Counter
	last                       prometheus.Gauge
	events                     *prometheus.CounterVec
	endpoint                   string
}

func (m *Metrics) forEndpoint(endpoint string) endpointMetrics {
	return endpointMetrics{
		received:  m.Received.WithLabelValues(endpoint),
		bytes:     m.Bytes.WithLabelValues(endpoint),
		truncated: m.Truncated.WithLabelValues(endpoint),
		dropped:   m.Dropped.WithLabelValues(DropSinkFailed),
		last:      m.LastMessage,
		events:    m.Events,
		endpoint:  endpoint,
	}
}

func (em endpointMetrics) event(name string) {
	em.events.WithLabelValues(em.endpoint, name).Inc()
}
