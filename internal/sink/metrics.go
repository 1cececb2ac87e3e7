package sink

import "github.com/prometheus/client_golang/prometheus"

// Drop reasons used by the sink, in the family ingest.Metrics.Dropped.
const (
	DropWriteError  = "write_error"
	DropLineTooLong = "line_too_long"
)

// Metrics are the sink's instruments.
type Metrics struct {
	Lines           prometheus.Counter
	Bytes           prometheus.Counter
	WriteErrors     prometheus.Counter
	Rotations       *prometheus.CounterVec
	Reopens         prometheus.Counter
	Compressed      prometheus.Counter
	CompressErrors  prometheus.Counter
	CompressPending prometheus.Gauge
	Pruned          prometheus.Counter
	// PrunedUnforwarded counts backups removed before the forwarder sent
	// them, because too many waited.
	PrunedUnforwarded prometheus.Counter
	// RetentionErrors counts backups retention could not remove, and
	// directories it could not list: a disk that fills unseen otherwise.
	RetentionErrors prometheus.Counter
	SyncSeconds     prometheus.Histogram
	SyncErrors      prometheus.Counter
	// A file per source (a template in AGG_LOG_FILE).
	FilesOpen, FilesKnown prometheus.Gauge
	FilesClosed           *prometheus.CounterVec
	RouteOverflow         prometheus.Counter

	droppedWrite, droppedTooLong prometheus.Counter
}

// NewMetrics registers the sink metrics with reg. dropped is the shared
// messages-dropped family (ingest.Metrics.Dropped), so that one series
// answers "what was received and not written, and why".
func NewMetrics(reg prometheus.Registerer, dropped *prometheus.CounterVec) *Metrics {
	m := &Metrics{
		Lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_lines_written_total",
			Help: "Lines written to the log file (one per message).",
		}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_written_bytes_total",
			Help: "Bytes written to the log file.",
		}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_write_errors_total",
			Help: "Failed writes to the log file; their lines are counted in aggregator_messages_dropped_total{reason=\"write_error\"}.",
		}),
		Rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_rotations_total",
			Help: "Log file rotations, by reason (size, time).",
		}, []string{"reason"}),
		Reopens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_reopens_total",
			Help: "Times the log file was reopened on SIGHUP.",
		}),
		Compressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_backups_compressed_total",
			Help: "Rotated backups compressed (gzip or zstd, AGG_COMPRESS).",
		}),
		CompressErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_compress_errors_total",
			Help: "Backups that could not be compressed (left uncompressed; retried after the next rotation).",
		}),
		CompressPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aggregator_backups_uncompressed",
			Help: "Rotated backups waiting for compression.",
		}),
		Pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_backups_removed_total",
			Help: "Rotated backups removed by retention (AGG_MAX_BACKUPS, AGG_MAX_AGE_DAYS).",
		}),
		PrunedUnforwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_backups_removed_unforwarded_total",
			Help: "Rotated backups removed before they were forwarded to NATS: more than 10 times AGG_MAX_BACKUPS waited.",
		}),
		RetentionErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_retention_errors_total",
			Help: "Backups retention could not remove, and log directories it could not list (AGG_MAX_BACKUPS, AGG_MAX_AGE_DAYS then do not hold; retried after the next rotation).",
		}),
		SyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "aggregator_file_sync_seconds",
			Help:    "Time taken by each sync (fdatasync) of the log file: at AGG_SYNC_INTERVAL, at rotation and stop, before forwarding and before a central acknowledges.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		SyncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_file_sync_errors_total",
			Help: "Syncs of the log file that failed (the disk reported an error): what they covered may not survive a power cut.",
		}),
		FilesOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aggregator_files_open",
			Help: "Log files open (a file per source: at most AGG_MAX_OPEN_FILES).",
		}),
		FilesKnown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aggregator_files",
			Help: "Distinct log files written in the last hour (a file per source: at most AGG_MAX_FILES, besides the overflow file).",
		}),
		FilesClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_files_closed_total",
			Help: "Log files closed while the daemon runs, by reason: evicted (AGG_MAX_OPEN_FILES were open), idle (not written for 5 minutes), reopen (SIGHUP).",
		}, []string{"reason"}),
		RouteOverflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aggregator_route_overflow_total",
			Help: "Lines written to the overflow file because AGG_MAX_FILES distinct files were in use.",
		}),
		droppedWrite:   dropped.WithLabelValues(DropWriteError),
		droppedTooLong: dropped.WithLabelValues(DropLineTooLong),
	}
	// Make the labelled series visible at zero, so dashboards and alerts
	// see them before the first event.
	m.Rotations.WithLabelValues("size")
	m.Rotations.WithLabelValues("time")
	for _, reason := range []string{"evicted", "idle", "reopen"} {
		m.FilesClosed.WithLabelValues(reason)
	}
	reg.MustRegister(m.Lines, m.Bytes, m.WriteErrors, m.Rotations, m.Reopens,
		m.Compressed, m.CompressErrors, m.CompressPending, m.Pruned, m.PrunedUnforwarded, m.RetentionErrors, m.SyncSeconds, m.SyncErrors,
		m.FilesOpen, m.FilesKnown, m.FilesClosed, m.RouteOverflow)
	return m
}
