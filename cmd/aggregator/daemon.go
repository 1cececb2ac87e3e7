package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sync/errgroup"

	"aggregator/internal/consume"
	"aggregator/internal/curve"
	"aggregator/internal/forward"
	"aggregator/internal/ingest"
	"aggregator/internal/queue"
	"aggregator/internal/route"
	"aggregator/internal/sdnotify"
	"aggregator/internal/sink"
	"aggregator/internal/zmqbuild"
)

// httpShutdownWait bounds the wait for in-flight scrapes at stop.
const httpShutdownWait = 2 * time.Second

// daemon is the wired program:
//
//	publishers ─zmq─▶ Subscriber per endpoint, in receive loops (one per core)
//	                      │ stamps receive time, batches
//	JetStream ─▶ consume.Consumer (a central daemon)
//	                      ▼
//	               queue.Queue (fixed number of batches)
//	                      │
//	                      ▼
//	               sink.Writer (one goroutine) ─▶ subscriber.log + backups
//	                                                     │
//	               forward.Forwarder (an edge) ◀─────────┘ ─▶ JetStream
//
// plus an HTTP server for metrics and health. main owns the zmq context,
// the registry and the order of shutdown.
type daemon struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	zctx     *zmq.Context
	queue    *queue.Queue
	subs     []*ingest.Subscriber
	writer   *sink.Writer
	listener net.Listener
	server   *http.Server
	auth     *curve.Authenticator // nil unless AGG_CURVE_ALLOWED_KEYS_FILE
	fwd      *forward.Forwarder   // nil unless AGG_NATS_URL
	cons     *consume.Consumer    // nil unless AGG_NATS_CONSUME
	notify   *sdnotify.Notifier
	watchdog time.Duration

	running   atomic.Bool            // between the start of Run and the start of shutdown
	failed    atomic.Pointer[string] // the first part that failed, for /-/ready
	writerRan bool                   // Run started the writer, which then closes its own file
}

// newDaemon builds every component: sockets are bound or connecting, the
// file is open and the HTTP port is bound when it returns, so that any
// start-up problem is reported before the daemon says it is ready.
func newDaemon(cfg Config, log *slog.Logger, getenv func(string) string) (d *daemon, err error) {
	d = &daemon{cfg: cfg, log: log, notify: sdnotify.New(getenv), watchdog: sdnotify.WatchdogInterval(getenv)}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	format, _ := sink.ParseFormat(cfg.Format) // checked by Validate
	codec, _ := sink.ParseCodec(cfg.Compress)

	// Instrumentation.
	d.reg = prometheus.NewRegistry()
	d.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	d.reg.MustRegister(zmqbuild.Collectors()...)
	d.queue = queue.NewQueue(cfg.QueueBatches)
	im := ingest.NewMetrics(d.reg, d.queue)
	sm := sink.NewMetrics(d.reg, im.Dropped)

	// Forwarding, when configured: it reads what the writer writes. A NATS
	// server that is down is no reason not to start; /-/ready says so.
	tpl, err := route.Parse(cfg.LogFile) // checked by Validate
	if err != nil {
		return d, err
	}
	var written func(string)
	var unforwarded func(string) time.Time
	if cfg.NATS.Enabled() {
		lag := func(measure func(*forward.Forwarder) float64) func() float64 {
			return func() float64 {
				if d.fwd == nil {
					return 0
				}
				return measure(d.fwd)
			}
		}
		fm := forward.NewMetrics(d.reg, lag((*forward.Forwarder).LagSeconds), lag((*forward.Forwarder).LagBytes))
		opt := cfg.NATS.Options(cfg.LogFile)
		if !tpl.Static() {
			opt.Route = tpl
		}
		if d.fwd, err = forward.New(opt, fm, log.With("component", "forward")); err != nil {
			return d, err
		}
		written, unforwarded = d.fwd.Notify, d.fwd.Unforwarded
	}

	if cfg.NATS.Consuming() {
		if d.cons, err = consume.New(consume.Options{
			Server:       cfg.NATS.Server(),
			Subject:      cfg.NATS.Subject,
			Partitions:   cfg.NATS.Partitions,
			Stream:       cfg.NATS.Consume,
			Durable:      cfg.NATS.ConsumerName(),
			Partition:    cfg.NATS.Partition,
			Routed:       !tpl.Static(),
			Log:          cfg.LogFile,
			MaxFileBytes: int64(cfg.MaxSizeMB) << 20,
		}, consume.NewMetrics(d.reg), log.With("component", "consume")); err != nil {
			return d, err
		}
	}

	// Output first: no socket is opened for a file that cannot be written.
	d.writer, err = sink.New(sink.Options{
		Route:         tpl,
		MaxOpenFiles:  cfg.MaxOpenFiles,
		MaxFiles:      cfg.MaxFiles,
		Written:       written,
		Unforwarded:   unforwarded,
		Path:          cfg.LogFile,
		Format:        format,
		Location:      cfg.Location(),
		MaxSizeMB:     cfg.MaxSizeMB,
		MaxBackups:    cfg.MaxBackups,
		MaxAgeDays:    cfg.MaxAgeDays,
		Compress:      codec,
		RotateEvery:   cfg.RotateEvery,
		FlushInterval: cfg.FlushInterval,
		SyncInterval:  cfg.SyncInterval,
	}, sm, log.With("component", "sink"))
	if err != nil {
		return d, err
	}

	// Health, for the alerting rules (configs/alerts.yml).
	d.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aggregator_ready",
			Help: "1 while /-/ready answers 200: every socket up, the log file writable, NATS reachable where configured.",
		}, func() float64 {
			if d.ready() != nil {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aggregator_writer_last_turn_timestamp_seconds",
			Help: "When the writer's loop last turned (at least once a second unless it is stuck, for example on a hung disk; the systemd watchdog restarts the daemon after WatchdogSec).",
		}, d.writer.LastTurn),
		sink.NewSpaceCollector(tpl.Dir()),
	)

	// Inputs.
	keys, err := cfg.KeyFiles.Load(envPrefix)
	if err != nil {
		return d, err
	}
	if d.zctx, err = zmq.NewContext(); err != nil {
		return d, fmt.Errorf("zmq context: %w", err)
	}
	subs := cfg.subscribers(ingest.Options{
		Topics:          cfg.Topics,
		RcvHWM:          cfg.RcvHWM,
		MaxMessageBytes: cfg.MaxMessageBytes,
		WantPeer:        format.NeedsPeer() || tpl.NeedsPeer(),
		Curve:           keys.ID,
		CurveServer:     keys.Server,
		StripNewline:    cfg.StripNewline,
		ReconnectMax:    cfg.reconnectMax(),
	})
	// Both must be set before the first socket. libzmq's default of 1,023
	// sockets would stop the daemon at about 340 subscribers.
	if err = errors.Join(d.zctx.SetIoThreads(cfg.IOThreads),
		d.zctx.SetMaxSockets(ingest.SocketsNeeded(len(subs)))); err != nil {
		return d, fmt.Errorf("zmq context: %w", err)
	}
	// The handler must be bound before any socket takes a connection.
	if d.auth, err = keys.Authenticator(d.zctx, log); err != nil {
		return d, err
	}
	ilog := log.With("component", "ingest")
	for _, opt := range subs {
		s, err := ingest.NewSubscriber(d.zctx, opt, d.queue, im, ilog)
		if err != nil {
			return d, err
		}
		d.subs = append(d.subs, s)
	}

	// HTTP.
	if cfg.HTTPAddr != "" {
		if d.listener, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return d, fmt.Errorf("listen on %s (AGG_HTTP_ADDR): %w", cfg.HTTPAddr, err)
		}
		d.server = &http.Server{
			Handler:           d.routes(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	return d, nil
}

// serveHTTP serves on l: plain HTTP, or TLS and authentication as the
// exporter-toolkit web configuration file says (read again for each
// connection, so a renewed certificate needs no restart).
func serveHTTP(server *http.Server, l net.Listener, webConfig string, log *slog.Logger) error {
	if webConfig == "" {
		return server.Serve(l)
	}
	return web.Serve(l, server, &web.FlagConfig{WebConfigFile: &webConfig}, log.With("component", "http"))
}

// HTTPAddr is the bound address of the HTTP server ("" without one).
func (d *daemon) HTTPAddr() string {
	if d.listener == nil {
		return ""
	}
	return d.listener.Addr().String()
}

func (d *daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{
		Registry:          d.reg,
		EnableOpenMetrics: true,
	}))
	// Profiles, as Prometheus itself serves them: the HTTP address is
	// loopback by default, and "where does the time go" is an operator's
	// question as much as a developer's.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "aggregator is healthy")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, r *http.Request) {
		if err := d.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "aggregator is ready")
	})
	return mux
}

// ready is nil once every socket is up and the file is open and writable.
func (d *daemon) ready() error {
	if p := d.failed.Load(); p != nil {
		return fmt.Errorf("stopping: %s", *p)
	}
	if !d.running.Load() {
		return errors.New("starting or stopping")
	}
	for _, s := range d.subs {
		if !s.Ready() {
			return fmt.Errorf("socket for %s is not up", s.Endpoint())
		}
	}
	if err := d.writer.Ready(); err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	if d.fwd != nil {
		if err := d.fwd.Ready(); err != nil {
			return fmt.Errorf("forwarding: %w", err)
		}
	}
	if d.cons != nil {
		if err := d.cons.Ready(); err != nil {
			return fmt.Errorf("consuming: %w", err)
		}
	}
	return nil
}

// Run runs every part of the daemon in one errgroup until ctx is done or
// a part fails, then stops in order: the inputs stop and hand over what
// they hold, the writer writes all of it and closes the file, the
// forwarder saves its place, the HTTP server stops, and the zmq context is
// terminated. hup asks the writer to reopen the file.
//
// Each part retries what can pass by itself (a publisher down, NATS down,
// a full disk, a backup that will not compress) inside, with a back-off,
// and shows it on /-/ready. A part that returns while the daemon runs has
// met what a retry cannot mend (a receive loop without its sockets, an
// unreadable checkpoint, a port gone): it is logged and the daemon stops
// with an error, so that systemd restarts it (Restart=on-failure) rather
// than it running on without the part, unnoticed.
func (d *daemon) Run(ctx context.Context, hup <-chan struct{}) error {
	g, gctx := errgroup.WithContext(ctx)
	part := func(name string, fn func() error) {
		g.Go(func() error {
			err := fn()
			if err == nil && gctx.Err() == nil {
				err = errors.New("returned while the daemon runs")
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
				msg := err.Error()
				if d.failed.CompareAndSwap(nil, &msg) {
					d.log.Error("part failed; stopping", "err", err)
				}
			}
			return err
		})
	}
	var pipeline sync.WaitGroup // every part but HTTP, which outlives them
	stage := func(name string, fn func() error) {
		pipeline.Add(1)
		part(name, func() error { defer pipeline.Done(); return fn() })
	}

	// Inputs: once every one has returned, nothing more comes to the queue.
	var inputs sync.WaitGroup
	input := func(name string, fn func() error) {
		inputs.Add(1)
		stage(name, func() error { defer inputs.Done(); return fn() })
	}
	if len(d.subs) > 0 {
		input("receive loops", func() error { return ingest.RunAll(gctx, d.subs, d.queue) })
	}
	if d.cons != nil {
		input("consumer", func() error { return d.cons.Run(gctx, d.queue) })
	}
	g.Go(func() error { inputs.Wait(); close(d.queue.C); return nil })
	if d.auth != nil {
		authCtx, stopAuth := context.WithCancel(context.Background())
		g.Go(func() error { inputs.Wait(); stopAuth(); return nil }) // a handshake may need it until then
		stage("authenticator", func() error { d.auth.Run(authCtx); return nil })
	}

	// The writer, with its compressor, drains the queue before it returns.
	writerDone := make(chan struct{})
	d.writerRan = true
	stage("writer", func() error {
		defer close(writerDone)
		defer d.queue.Close() // every batch is back: free their memory
		return d.writer.Run(d.queue, hup)
	})
	// The forwarder stops after the writer: it saves its place, and what
	// is not yet acknowledged goes at the next start.
	if d.fwd != nil {
		fwdCtx, stopFwd := context.WithCancel(context.Background())
		g.Go(func() error { <-writerDone; stopFwd(); return nil })
		stage("forwarder", func() error { return d.fwd.Run(fwdCtx) })
	}
	// HTTP answers until the rest has stopped: the last scrape sees the
	// totals.
	if d.server != nil {
		part("http server", func() error {
			if err := serveHTTP(d.server, d.listener, d.cfg.WebConfig, d.log); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			pipeline.Wait()
			sctx, cancel := context.WithTimeout(context.Background(), httpShutdownWait)
			defer cancel()
			d.server.Shutdown(sctx)
			return nil
		})
	}
	stopWatchdog := d.startWatchdog()

	d.running.Store(true)
	d.notify.Send(sdnotify.Ready)
	d.log.Info("started", "connect", d.cfg.Connect, "bind", d.cfg.Bind, "pull_connect", d.cfg.PullConnect,
		"pull_bind", d.cfg.PullBind, "file", d.cfg.LogFile, "http", d.HTTPAddr())

	<-gctx.Done()
	if d.failed.Load() == nil {
		d.log.Info("stopping: writing what was received")
	}
	d.running.Store(false)
	d.notify.Send(sdnotify.Stopping)
	stopWatchdog()
	err := g.Wait()
	d.auth = nil
	d.close()
	d.log.Info("totals",
		"received", d.total("aggregator_messages_received_total"),
		"written", d.total("aggregator_lines_written_total"),
		"dropped", d.total("aggregator_messages_dropped_total"),
		"truncated", d.total("aggregator_messages_truncated_total"))
	return err
}

// total sums every series of a counter family, for the closing log line
// that lets an operator compare what came in with what went out.
func (d *daemon) total(name string) float64 {
	families, _ := d.reg.Gather()
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// startWatchdog pings systemd's watchdog while the writer's loop keeps
// turning; a writer stuck on a hung disk stops the pings and lets systemd
// restart the daemon.
func (d *daemon) startWatchdog() (stop func()) {
	if d.watchdog <= 0 || !d.notify.Enabled() {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d.watchdog)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if d.writer.Alive(2 * d.watchdog) {
					d.notify.Send(sdnotify.Watchdog)
				}
			}
		}
	}()
	return func() { close(done) }
}

// close releases what newDaemon made. Sockets not handed to Run are closed
// here; the context is terminated last, since Term waits for every socket.
func (d *daemon) close() {
	if d.running.Load() {
		return
	}
	for _, s := range d.subs {
		s.Close()
	}
	if d.auth != nil {
		d.auth.Close() // Run never started
	}
	if d.fwd != nil && !d.writerRan {
		d.fwd.Close() // Run never started
	}
	if d.cons != nil && !d.writerRan {
		d.cons.Close()
	}
	if d.server != nil {
		d.server.Close()
	}
	if d.listener != nil {
		d.listener.Close() // when Serve never ran
	}
	if d.writer != nil && !d.writerRan {
		d.writer.Close()
	}
	if d.zctx != nil {
		d.zctx.Term()
		d.zctx = nil
	}
}
