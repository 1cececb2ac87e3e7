// Command aggregator subscribes to ZeroMQ publishers and appends every
// message, stamped with its receive time, as one line to a rotating log
// file. Configuration comes from AGG_* environment variables; run
// `aggregator -help` for the list.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"aggregator/internal/cli"
	"aggregator/internal/logread"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is the whole program; only main turns its result into an exit. It
// stops when ctx is done, as on SIGTERM, and reads its environment only
// through lookup, so that a test can run it in-process with a map (under
// the race detector when the tests run under it).
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "read" {
		return logread.Main(args[1:], stdout, stderr)
	}
	// Signals first: Go's default action for SIGHUP kills the process, and
	// a logrotate postrotate script may send one at any moment.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	flags := cli.Parse("aggregator", version, args, stdout, stderr, printUsage)
	if flags.Exit != nil {
		return *flags.Exit
	}
	cfg, err := loadConfig(lookup)
	if err != nil {
		return cli.ReportConfig("aggregator", err, stderr)
	}
	if flags.CheckConfig {
		fmt.Fprintln(stdout, "aggregator: configuration OK")
		return cli.ExitOK
	}

	log := cli.NewLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	log.Info("starting", "version", cli.Version(version), "config", cfg)
	getenv := func(k string) string { v, _ := lookup(k); return v }
	d, err := newDaemon(cfg, log, getenv)
	if err != nil {
		log.Error("start failed", "err", err)
		return cli.ExitFail
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hup := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					select {
					case hup <- struct{}{}:
					default: // a reopen is already pending
					}
					continue
				}
				log.Info("signal received", "signal", sig.String())
				cancel()
			}
		}
	}()
	if err := d.Run(ctx, hup); err != nil {
		log.Error("stopped with error", "err", err)
		return cli.ExitFail
	}
	log.Info("stopped")
	return cli.ExitOK
}
