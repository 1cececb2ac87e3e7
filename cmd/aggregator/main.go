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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; only main turns its result into an exit.
func run(args []string, stdout, stderr io.Writer) int {
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
	cfg, err := loadConfig()
	if err != nil {
		return cli.ReportConfig("aggregator", err, stderr)
	}
	if flags.CheckConfig {
		fmt.Fprintln(stdout, "aggregator: configuration OK")
		return cli.ExitOK
	}

	log := cli.NewLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	log.Info("starting", "version", cli.Version(version), "config", cfg)
	d, err := newDaemon(cfg, log, os.Getenv)
	if err != nil {
		log.Error("start failed", "err", err)
		return cli.ExitFail
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan struct{}, 1)
	go func() {
		for sig := range sigs {
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
	}()
	if err := d.Run(ctx, hup); err != nil {
		log.Error("stopped with error", "err", err)
		return cli.ExitFail
	}
	log.Info("stopped")
	return cli.ExitOK
}
