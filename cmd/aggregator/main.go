// Command aggregator subscribes to ZeroMQ publishers and appends every
// message, stamped with its receive time, as one line to a rotating log
// file. Configuration comes from AGG_* environment variables; run
// `aggregator -help` for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses; 78 is EX_CONFIG from sysexits.h, which the systemd unit
// uses to stop a restart loop over a bad configuration.
const (
	exitOK     = 0
	exitFail   = 1
	exitUsage  = 2
	exitConfig = 78
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; only main turns its result into an exit.
func run(args []string, stdout, stderr io.Writer) int {
	// Signals first: Go's default action for SIGHUP kills the process, and
	// a logrotate postrotate script may send one at any moment.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(stderr) }
	checkOnly := fs.Bool("check-config", false, "check the configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	help := fs.Bool("help", false, "print help and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	switch {
	case *help:
		printUsage(stdout)
		return exitOK
	case *showVersion:
		fmt.Fprintf(stdout, "aggregator %s\n", fullVersion())
		return exitOK
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "aggregator: unexpected argument %q; configuration is read from AGG_* variables (see -help)\n", fs.Arg(0))
		return exitUsage
	}

	cfg, err := loadConfig()
	if err == nil {
		err = cfg.checkEnvironment()
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "aggregator: config: %s\n", line)
		}
		return exitConfig
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "aggregator: configuration OK")
		return exitOK
	}

	log := newLogger(cfg, stderr)
	log.Info("starting", "version", fullVersion(), "config", cfg)
	d, err := newDaemon(cfg, log, os.Getenv)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
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
		return exitFail
	}
	log.Info("stopped")
	return exitOK
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel)) // checked by Validate
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// fullVersion adds the VCS revision the Go toolchain recorded, when the
// version was not set at link time.
func fullVersion() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && v == "dev" {
				v += "-" + s.Value[:min(12, len(s.Value))]
			}
		}
		v += " (" + info.GoVersion + ")"
	}
	return v
}
