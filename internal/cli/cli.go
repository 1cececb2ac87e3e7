// Package cli holds the command-line conventions both binaries share: the
// flags (-help, -version, -check-config, -curve-keygen), exit statuses, the
// version string and the stderr logger.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"aggregator/internal/curve"
	"aggregator/internal/zmqbuild"
)

// Exit statuses. 78 is EX_CONFIG from sysexits.h; the systemd units use it
// to stop a restart loop over a bad configuration.
const (
	ExitOK     = 0
	ExitFail   = 1
	ExitUsage  = 2
	ExitConfig = 78
)

// Flags are what the command line asked for. Configuration itself comes
// from the environment.
type Flags struct {
	CheckConfig bool
	// Exit, when set, is the status to exit with at once (help, version or
	// a usage error have been handled).
	Exit *int
}

// Parse reads args for program name. usage prints the full help.
func Parse(name, version string, args []string, stdout, stderr io.Writer, usage func(io.Writer)) Flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	check := fs.Bool("check-config", false, "check the configuration and exit")
	keygen := fs.String("curve-keygen", "", "write a new CurveZMQ certificate pair, public `DIR/NAME` and secret DIR/NAME_secret (czmq and pyzmq read them), and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	help := fs.Bool("help", false, "print help and exit")
	exit := func(code int) Flags { return Flags{Exit: &code} }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exit(ExitOK)
		}
		return exit(ExitUsage)
	}
	switch {
	case *help:
		usage(stdout)
		return exit(ExitOK)
	case *showVersion:
		fmt.Fprintf(stdout, "%s %s\n", name, Version(version))
		return exit(ExitOK)
	case *keygen != "":
		secret, public, err := curve.Keygen(*keygen)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return exit(ExitFail)
		}
		fmt.Fprintf(stdout, "%s\n%s\n", secret, public)
		return exit(ExitOK)
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q; configuration is read from environment variables (see -help)\n", name, fs.Arg(0))
		return exit(ExitUsage)
	}
	return Flags{CheckConfig: *check}
}

// ReportConfig prints each line of a configuration error and returns
// ExitConfig.
func ReportConfig(name string, err error, stderr io.Writer) int {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(stderr, "%s: config: %s\n", name, line)
	}
	return ExitConfig
}

// Version adds the VCS revision the Go toolchain recorded, when the
// version was not set at link time, and the Go version.
func Version(v string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && v == "dev" {
				v += "-" + s.Value[:min(12, len(s.Value))]
			}
		}
		v += " (" + info.GoVersion + ", " + zmqbuild.Describe() + ")"
	}
	return v
}

// CheckLog reports whether level and format name a logger NewLogger can make.
func CheckLog(level, format string) (levelErr, formatErr error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		levelErr = fmt.Errorf("%q: want debug, info, warn or error", level)
	}
	if format != "text" && format != "json" {
		formatErr = fmt.Errorf("%q: want text or json", format)
	}
	return levelErr, formatErr
}

// NewLogger makes the structured stderr logger; level and format have been
// checked with CheckLog.
func NewLogger(level, format string, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
