// Command downcase is the reference publisher: an HTTP service that
// answers GET /downcase/?param=HeLLo with "lower case of HeLLo is hello"
// and publishes the same text on a ZeroMQ PUB socket, where aggregator
// picks it up. Configuration comes from DOWNCASE_* variables; run
// `downcase -help` for the list.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"aggregator/internal/cli"
	"aggregator/internal/curve"
	"aggregator/internal/sdnotify"
)

var version = "dev"

// shutdownWait bounds how long in-flight requests may take at stop.
const shutdownWait = 10 * time.Second

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is the whole program, stopped by ctx or SIGTERM; it reads its
// environment only through lookup.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP) // nothing to reopen; do not die of it
	defer signal.Stop(sigs)

	flags := cli.Parse("downcase", version, args, stdout, stderr, printUsage)
	if flags.Exit != nil {
		return *flags.Exit
	}
	cfg, err := loadConfig(lookup)
	if err != nil {
		return cli.ReportConfig("downcase", err, stderr)
	}
	if flags.CheckConfig {
		fmt.Fprintln(stdout, "downcase: configuration OK")
		return cli.ExitOK
	}

	log := cli.NewLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	log.Info("starting", "version", cli.Version(version), "http_addr", cfg.HTTPAddr,
		"pub_bind", cfg.PubBind, "pub_connect", cfg.PubConnect, "topic", cfg.Topic)
	s, err := newService(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return cli.ExitFail
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case sig := <-sigs:
			log.Info("signal received", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	getenv := func(k string) string { v, _ := lookup(k); return v }
	if err := s.Run(ctx, sdnotify.New(getenv)); err != nil {
		log.Error("stopped with error", "err", err)
		return cli.ExitFail
	}
	log.Info("stopped")
	return cli.ExitOK
}

// service is the wired program: HTTP API -> bounded queue -> publisher.
type service struct {
	log      *slog.Logger
	zctx     *zmq.Context
	pub      *publisher
	auth     *curve.Authenticator // nil unless DOWNCASE_CURVE_ALLOWED_KEYS_FILE
	listener net.Listener
	server   *http.Server
	// webConfig is the exporter-toolkit web configuration file; "": plain HTTP.
	webConfig string
	stopping  chan struct{}
}

func newService(cfg Config, log *slog.Logger) (_ *service, err error) {
	s := &service{log: log, stopping: make(chan struct{}), webConfig: cfg.WebConfig}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())

	keys, err := cfg.KeyFiles.Load(envPrefix)
	if err != nil {
		return nil, err
	}
	if s.zctx, err = zmq.NewContext(); err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	if s.auth, err = keys.Authenticator(s.zctx, log); err != nil {
		return nil, err
	}
	var queueLen, held func() float64 = func() float64 { return 0 }, func() float64 { return 0 }
	m := newPubMetrics(reg, func() float64 { return queueLen() }, func() float64 { return held() })
	if s.pub, err = newPublisher(s.zctx, cfg, keys, m, log.With("component", "publisher")); err != nil {
		return nil, err
	}
	queueLen = func() float64 { return float64(len(s.pub.queue)) }
	held = func() float64 { return float64(s.pub.heldSize.Load()) }

	mux := http.NewServeMux()
	newAPI(cfg.MaxParamBytes, s.pub, reg).register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "downcase is healthy")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.stopping:
			http.Error(w, "not ready: stopping", http.StatusServiceUnavailable)
			return
		default:
		}
		if !s.pub.up.Load() {
			http.Error(w, "not ready: publisher is down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "downcase is ready")
	})
	if s.listener, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen on %s (DOWNCASE_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	s.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr is the bound HTTP address.
func (s *service) Addr() string { return s.listener.Addr().String() }

// Run serves until ctx is done, then stops accepting, lets in-flight
// requests finish, sends what is queued (bounded by the linger) and exits.
func (s *service) Run(ctx context.Context, notify *sdnotify.Notifier) error {
	go s.pub.run()
	authCtx, stopAuth := context.WithCancel(context.Background())
	authDone := make(chan struct{})
	if s.auth != nil {
		go func() { s.auth.Run(authCtx); close(authDone) }()
	} else {
		close(authDone)
	}
	served := make(chan error, 1)
	go func() {
		if s.webConfig == "" {
			served <- s.server.Serve(s.listener)
			return
		}
		served <- web.Serve(s.listener, s.server, &web.FlagConfig{WebConfigFile: &s.webConfig}, s.log.With("component", "http"))
	}()
	notify.Send(sdnotify.Ready)
	s.log.Info("started", "http", s.Addr())

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	close(s.stopping)
	notify.Send(sdnotify.Stopping)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	if serr := s.server.Shutdown(sctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", serr))
	}
	s.pub.close()
	stopAuth()
	<-authDone
	s.zctx.Term()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// closeAll releases what newService made when it fails half-way.
func (s *service) closeAll() {
	if s.listener != nil {
		s.listener.Close()
	}
	if s.pub != nil {
		s.pub.sock.Close()
	}
	if s.auth != nil {
		s.auth.Close()
	}
	if s.zctx != nil {
		s.zctx.Term()
	}
}
