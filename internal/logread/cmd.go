package logread

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// Exit statuses of the command.
const (
	exitOK    = 0
	exitFiles = 1 // a file could not be read (the others were)
	exitUsage = 2
)

const usage = `usage: aggregator read [flags] FILE...

Reads what the daemon wrote: FILE is a live file as AGG_LOG_FILE names it
(its backups beside it, .gz and .zst included, are read first, oldest
first), a directory of such files, or an AGG_LOG_FILE template such as
'/var/log/aggregator/{topic}.log'. Several logs are merged by time.

Times (--since inclusive, --until exclusive): RFC 3339 with or without
fractions (2026-12-03T10:00:00Z, 2026-12-03T10:00:00.5+01:00), a date
(2026-12-03, midnight UTC), "now", or relative to now: -1h, -90m, 1h30m
ago.

Flags:
`

// Main runs "aggregator read" with its arguments; it returns the exit
// status.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aggregator read", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "only records at or after this time")
	until := fs.String("until", "", "only records before this time")
	topic := fs.String("topic", "", "only records whose topic (a multipart message's first frame) starts with this")
	endpoint := fs.String("endpoint", "", "only records received on this endpoint (JSON lines; text lines do not record it)")
	edge := fs.String("edge", "", "only records a central took from this edge")
	grep := fs.String("grep", "", "only records whose message holds this string (fixed, like grep -F)")
	last := fs.Int("n", 0, "only the last N records (before following)")
	output := fs.String("output", "text", "text (the lines as stored), json (AGG_FORMAT=json's schema), message (the producer's message: escapes decoded, the frames after the topic joined by TAB) or raw (each record's exact frames: a line \"TIME N\", then for each frame its length in bytes, a newline, its bytes and a newline)")
	var follow bool
	fs.BoolVar(&follow, "f", false, "follow: after the records there, print new ones as the daemon writes them, across its rotations")
	fs.BoolVar(&follow, "follow", false, "the same as -f")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "aggregator read: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() == 0 {
		return bad("no FILE: name a log file, a directory or an AGG_LOG_FILE template (see -help)")
	}
	now := time.Now()
	opt := Options{Endpoint: *endpoint, Edge: *edge, Last: *last, Follow: follow}
	var err error
	if opt.Since, err = parseTime(*since, now); err != nil {
		return bad("--since: %v", err)
	}
	if opt.Until, err = parseTime(*until, now); err != nil {
		return bad("--until: %v", err)
	}
	if !opt.Since.IsZero() && !opt.Until.IsZero() && !opt.Until.After(opt.Since) {
		return bad("--until (%s) is not after --since (%s)", opt.Until.Format(time.RFC3339Nano), opt.Since.Format(time.RFC3339Nano))
	}
	if *last < 0 {
		return bad("-n %d: want 0 (all) or more", *last)
	}
	if *topic != "" {
		opt.Topic = []byte(*topic)
	}
	if *grep != "" {
		opt.Grep = []byte(*grep)
	}
	switch *output {
	case "text":
		opt.Output = Text
	case "json":
		opt.Output = JSON
	case "message":
		opt.Output = Message
	case "raw":
		opt.Output = Raw
	default:
		return bad("--output %q: want text, json, message or raw", *output)
	}

	// Memory is bounded by the blocks in flight, a few MB: collecting
	// less often leaves the cores to decompressing.
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Read(ctx, fs.Args(), opt, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "aggregator read: %v\n", err)
		return exitFiles
	}
	if res.Unparsed > 0 {
		fmt.Fprintf(stderr, "aggregator read: %d lines not in the daemon's format (passed through unless a filter is set)\n", res.Unparsed)
	}
	if res.FileErrors > 0 {
		return exitFiles
	}
	return exitOK
}

// parseTime reads a --since or --until value; "" is no bound.
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		d, err := time.ParseDuration(s[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want a duration such as -1h or -90m", s)
		}
		return now.Add(-d), nil
	case strings.HasSuffix(s, " ago"):
		d, err := time.ParseDuration(strings.TrimSpace(strings.TrimSuffix(s, " ago")))
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want a duration such as 10m ago", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-12-03T10:00:00Z), a date (2026-12-03), now, or -1h / 10m ago", s)
}
