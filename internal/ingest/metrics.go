package ingest

import (
	"sync"
	"sync/atomic"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"aggregator/internal/queue"
)

// Metrics are the ingest side's instruments. The per-endpoint series are
// plain atomic counters in each endpoint's stats, turned into metrics only
// when scraped (see Collect): a labelled child per endpoint and series
// costs heap for every endpoint, even a quiet one (measured in
// docs/performance.md).
type Metrics struct {
	LastMessage prometheus.Gauge
	// Dropped counts messages received but never written, by reason. The
	// sink adds its own reasons to the same family.
	Dropped *prometheus.CounterVec

	mu           sync.Mutex
	endpoints    []*endpointStats
	unattributed *endpointStats // made when first needed

	received, bytes, truncated, events, connections *prometheus.Desc
}

// NewMetrics registers the ingest metrics with reg. q, when not nil, is
// exported as the number of records waiting for the sink.
func NewMetrics(reg prometheus.Registerer, q *queue.Queue) *Metrics {
	ep := []string{"endpoint"}
	m := &Metrics{
		LastMessage: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aggregator_last_message_timestamp_seconds",
			Help: "Receive time of the newest message, as a Unix timestamp.",
		}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_messages_dropped_total",
			Help: "Messages received but not written, by reason.",
		}, []string{"reason"}),
		received: prometheus.NewDesc("aggregator_messages_received_total",
			"Messages received from publishers, by configured endpoint (\"unattributed\": a shared socket could not tell which). A multipart message counts once.", ep, nil),
		bytes: prometheus.NewDesc("aggregator_received_bytes_total",
			"Payload bytes received (all frames, after truncation), by configured endpoint.", ep, nil),
		truncated: prometheus.NewDesc("aggregator_messages_truncated_total",
			"Messages longer than the maximum message size, cut to it, by configured endpoint.", ep, nil),
		events: prometheus.NewDesc("aggregator_connection_events_total",
			"Socket events reported by libzmq (connected, accepted, disconnected, handshake_failed, ...), by configured endpoint.",
			[]string{"endpoint", "event"}, nil),
		connections: prometheus.NewDesc("aggregator_endpoint_connections",
			"Connections to publishers open now, by configured endpoint: 0 or 1 for an endpoint the daemon connects to, the number of connected publishers for one it binds.", ep, nil),
	}
	reg.MustRegister(m, m.LastMessage, m.Dropped)
	if q != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aggregator_queue_records",
			Help: "Records received and waiting to be written.",
		}, func() float64 { return float64(q.Waiting()) }))
	}
	return m
}

// Describe implements prometheus.Collector for the per-endpoint series.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.received, m.bytes, m.truncated, m.events, m.connections} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one series per endpoint and
// counter, and one per endpoint and event kind seen.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	endpoints := m.endpoints
	m.mu.Unlock()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, s := range endpoints {
		counter(m.received, s.received.Load(), s.endpoint)
		counter(m.bytes, s.bytes.Load(), s.endpoint)
		counter(m.truncated, s.truncated.Load(), s.endpoint)
		ch <- prometheus.MustNewConstMetric(m.connections, prometheus.GaugeValue, float64(s.connections.Load()), s.endpoint)
		for kind := range s.events {
			if v := s.events[kind].Load(); v > 0 {
				counter(m.events, v, s.endpoint, eventKinds[kind])
			}
		}
	}
}

// Event kinds, as the metric's event label says them.
const (
	evConnected = iota
	evListening
	evBindFailed
	evAccepted
	evAcceptFailed
	evDisconnected
	evHandshakeFailed
	evRestarted // not libzmq's: the daemon connected again (revive.go)
	evOther
	numEventKinds
)

var eventKinds = [numEventKinds]string{"connected", "listening", "bind_failed", "accepted",
	"accept_failed", "disconnected", "handshake_failed", "restarted", "other"}

func eventKind(ev zmq.Event) int {
	switch ev {
	case zmq.EVENT_CONNECTED:
		return evConnected
	case zmq.EVENT_LISTENING:
		return evListening
	case zmq.EVENT_BIND_FAILED:
		return evBindFailed
	case zmq.EVENT_ACCEPTED:
		return evAccepted
	case zmq.EVENT_ACCEPT_FAILED:
		return evAcceptFailed
	case zmq.EVENT_DISCONNECTED:
		return evDisconnected
	case zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		return evHandshakeFailed
	default:
		return evOther
	}
}

// endpointStats are one endpoint's counters: written by the loop that owns
// its subscriber, read by scrapes.
type endpointStats struct {
	endpoint                   string
	received, bytes, truncated atomic.Uint64
	connections                atomic.Int64
	events                     [numEventKinds]atomic.Uint64
}

// forEndpoint adds an endpoint's series, all at zero, so that an endpoint
// that never connected shows.
func (m *Metrics) forEndpoint(endpoint string) *endpointStats {
	s := &endpointStats{endpoint: endpoint}
	m.mu.Lock()
	m.endpoints = append(m.endpoints, s)
	m.mu.Unlock()
	return s
}

// unattributedStats are the counters of what shared sockets could not
// attribute to an endpoint (see sources), shared by every subscriber.
func (m *Metrics) unattributedStats() *endpointStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unattributed == nil {
		m.unattributed = &endpointStats{endpoint: Unattributed}
		m.endpoints = append(m.endpoints, m.unattributed)
	}
	return m.unattributed
}
