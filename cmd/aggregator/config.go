package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"aggregator/internal/cli"
	"github.com/prometheus/exporter-toolkit/web"

	"aggregator/internal/curve"
	"aggregator/internal/envconf"
	"aggregator/internal/forward"
	"aggregator/internal/ingest"
	"aggregator/internal/route"
	"aggregator/internal/sink"
)

// envPrefix is the prefix of every variable the daemon reads.
const envPrefix = "AGG"

// Config is the whole configuration, read from AGG_* variables. The tags
// are the documentation: `aggregator -help` prints them.
type Config struct {
	Connect []string `envconfig:"CONNECT" default:"tcp://127.0.0.1:4444" desc:"comma-separated endpoints of publishers that bind; the daemon connects to each (tcp://host:port, ipc://path); empty for none"`
	Bind    []string `envconfig:"BIND" desc:"comma-separated endpoints the daemon binds for publishers that connect (tcp://*:port, tcp://127.0.0.1:port, ipc://path)"`
	Topics  []string `envconfig:"TOPICS" desc:"comma-separated topic prefixes to subscribe to; empty subscribes to everything"`

	PullConnect []string `envconfig:"PULL_CONNECT" desc:"comma-separated endpoints of PUSH producers that bind; the daemon connects a PULL socket to each"`
	PullBind    []string `envconfig:"PULL_BIND" desc:"comma-separated endpoints the daemon binds with a PULL socket, for PUSH producers that connect (logbook's ZeroMQHandler(multi=True), syslog-ng, rsyslog's omczmq)"`

	ReconnectMax time.Duration `envconfig:"RECONNECT_MAX" default:"0s" desc:"longest wait between attempts to reach a publisher that is down (libzmq backs off from 100ms up to this): one that comes back is found within about this long; 0s: 1s, or with more than 500 connect endpoints 2ms per endpoint, so that an idle daemon makes at most about 500 attempts a second"`
	StripNewline bool          `envconfig:"STRIP_NEWLINE" default:"true" desc:"drop one newline (\\n or \\r\\n) that ends a message, as rsyslog does: it ends the record, it is not part of it"`

	LogFile       string        `envconfig:"LOG_FILE" default:"subscriber.log" desc:"path of the live log file; its directory must exist and be writable; backups are written next to it. Placeholders in the file name write a file per source: {topic} (first frame of a multipart message), {topic:N} (its first N dot-separated parts), {endpoint}, {peer}; on a central, {edge} and {source}; e.g. /var/log/aggregator/{topic}.log"`
	MaxOpenFiles  int           `envconfig:"MAX_OPEN_FILES" default:"1024" desc:"with a file per source: log files kept open at once (two descriptors each); the least recently written is closed first and opened again when needed"`
	MaxFiles      int           `envconfig:"MAX_FILES" default:"10000" desc:"with a file per source: distinct files written within an hour; lines that would start another go to the overflow file ({...} replaced by %overflow) and are counted in aggregator_route_overflow_total"`
	Format        string        `envconfig:"FORMAT" default:"text" desc:"line format: text (<time> <message>) or json (one object a line)"`
	TimeZone      string        `envconfig:"TIMEZONE" default:"UTC" desc:"time zone of the receive timestamps: UTC, Local or an IANA name such as Europe/Paris"`
	MaxSizeMB     int           `envconfig:"MAX_SIZE_MB" default:"100" desc:"rotate the live file before it grows past this many MiB (at least 1)"`
	MaxBackups    int           `envconfig:"MAX_BACKUPS" default:"10" desc:"rotated backups to keep; 0 keeps all"`
	MaxAgeDays    int           `envconfig:"MAX_AGE_DAYS" default:"0" desc:"delete backups older than this many days; 0 keeps all"`
	Compress      string        `envconfig:"COMPRESS" default:"gzip" desc:"compress rotated backups, in the background, never on the write path: gzip, zstd or false (true means gzip)"`
	RotateEvery   time.Duration `envconfig:"ROTATE_EVERY" default:"0s" desc:"also rotate on this time boundary (e.g. 24h: at midnight UTC, 1h: on the hour); 0s turns it off"`
	FlushInterval time.Duration `envconfig:"FLUSH_INTERVAL" default:"100ms" desc:"longest a line waits in the write buffer while messages keep arriving; an idle daemon writes at once (with a file per source, when at most 64 files hold lines)"`
	SyncInterval  time.Duration `envconfig:"SYNC_INTERVAL" default:"1s" desc:"longest written lines wait before the file is synced to disk (fdatasync), so the most a power cut or kernel panic loses; 0s syncs only at rotation and stop (forwarded lines and a central's are synced before they are acknowledged, whatever this says)"`

	RcvHWM          int `envconfig:"RCVHWM" default:"1000" desc:"ZeroMQ receive high-water mark per socket, in messages (0 means no limit): what waits in libzmq when the writer falls behind"`
	MaxMessageBytes int `envconfig:"MAX_MESSAGE_BYTES" default:"65536" desc:"longest message kept, all frames together; a longer one is truncated to it and counted in aggregator_messages_truncated_total"`
	QueueBatches    int `envconfig:"QUEUE_BATCHES" default:"16" desc:"batches (up to 256 messages or 32 KiB each) queued between receiving and writing"`
	IOThreads       int `envconfig:"IO_THREADS" default:"1" desc:"libzmq I/O threads (ZMQ_IO_THREADS), which move messages between the network and the sockets; one keeps up with about a gigabyte a second"`

	curve.KeyFiles

	NATS forward.Config `envconfig:"NATS"`

	HTTPAddr  string `envconfig:"HTTP_ADDR" default:"127.0.0.1:9780" desc:"host:port of the HTTP server for /metrics, /-/healthy and /-/ready"`
	WebConfig string `envconfig:"WEB_CONFIG_FILE" desc:"the HTTP server's TLS and authentication: a web configuration file of Prometheus' exporter-toolkit (tls_server_config, client certificates, bcrypt basic_auth_users), as node_exporter's --web.config.file; empty: plain HTTP"`
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"daemon log level on stderr: debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"text" desc:"daemon log format on stderr: text or json"`
}

// loadConfig reads the environment and checks the result, on its own and
// against the machine, reporting every problem in one round: a user who
// fixes what one start named should not meet a new problem at the next.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	err := envconf.Process(envPrefix, &cfg, lookup)
	cfg.Connect = envconf.TrimList(cfg.Connect)
	cfg.Bind = envconf.TrimList(cfg.Bind)
	cfg.PullConnect = envconf.TrimList(cfg.PullConnect)
	cfg.PullBind = envconf.TrimList(cfg.PullBind)
	cfg.NATS.URLs = envconf.TrimList(cfg.NATS.URLs)
	cfg.Topics = envconf.TrimList(cfg.Topics)
	return cfg, errors.Join(err, cfg.Validate(), cfg.checkEnvironment())
}

// lineOverhead bounds the bytes a line adds to its message: timestamp,
// JSON field names, endpoint and peer.
const lineOverhead = 1024

// Validate checks the values on their own (checkEnvironment checks them
// against the machine) and names the variable in each problem.
func (c *Config) Validate() error {
	problems := envconf.NewProblems(envPrefix)
	bad := problems.Add
	var all []string
	for _, ep := range c.endpoints() {
		if err := ingest.CheckEndpoint(ep.name, ep.bind); err != nil {
			bad(ep.key, "%v", err)
		}
		all = append(all, ep.name)
	}
	if len(all) == 0 && !c.NATS.Consuming() {
		bad("CONNECT", "no endpoint to receive from: set AGG_CONNECT, AGG_BIND, AGG_PULL_CONNECT or AGG_PULL_BIND (or AGG_NATS_CONSUME)")
	}
	if seen := dupes(all); len(seen) > 0 {
		bad("BIND", "endpoint listed twice: %s", strings.Join(seen, ", "))
	}
	if c.ReconnectMax != 0 && c.ReconnectMax < 100*time.Millisecond {
		bad("RECONNECT_MAX", "%s: must be 0s (automatic) or at least 100ms", c.ReconnectMax)
	}
	if c.LogFile == "" {
		bad("LOG_FILE", "empty path")
	} else if tpl, err := route.Parse(c.LogFile); err != nil {
		bad("LOG_FILE", "%v", err)
	} else if !tpl.Static() {
		if tpl.ByEdge() && !c.NATS.Consuming() {
			bad("LOG_FILE", "{edge} and {source} name the files of a central daemon (AGG_NATS_CONSUME); this daemon receives from ZeroMQ: use {topic}, {endpoint} or {peer}")
		}
		if c.NATS.Consuming() && tpl.BySender() {
			bad("LOG_FILE", "a central's lines come whole from the stream: only {edge} and {source} name its files, not {topic}, {endpoint} or {peer}")
		}
	}
	if c.MaxOpenFiles < 1 {
		bad("MAX_OPEN_FILES", "%d: must be at least 1", c.MaxOpenFiles)
	}
	if c.MaxFiles < 1 {
		bad("MAX_FILES", "%d: must be at least 1", c.MaxFiles)
	}
	if _, err := sink.ParseCodec(c.Compress); err != nil {
		bad("COMPRESS", "%v", err)
	}
	if _, err := sink.ParseFormat(c.Format); err != nil {
		bad("FORMAT", "%v", err)
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "" {
		bad("TIMEZONE", "unknown time zone %q", c.TimeZone)
	}
	if c.MaxSizeMB < 1 {
		bad("MAX_SIZE_MB", "%d: must be at least 1", c.MaxSizeMB)
	}
	if c.MaxBackups < 0 {
		bad("MAX_BACKUPS", "%d: must not be negative", c.MaxBackups)
	}
	if c.MaxAgeDays < 0 {
		bad("MAX_AGE_DAYS", "%d: must not be negative", c.MaxAgeDays)
	}
	if c.RotateEvery != 0 && c.RotateEvery < time.Second {
		bad("ROTATE_EVERY", "%s: must be 0s (off) or at least 1s", c.RotateEvery)
	}
	if c.FlushInterval < time.Millisecond || c.FlushInterval > time.Minute {
		bad("FLUSH_INTERVAL", "%s: must be between 1ms and 1m", c.FlushInterval)
	}
	if c.SyncInterval != 0 && (c.SyncInterval < time.Millisecond || c.SyncInterval > time.Hour) {
		bad("SYNC_INTERVAL", "%s: must be 0s (at rotation and stop only) or between 1ms and 1h", c.SyncInterval)
	}
	if c.RcvHWM < 0 {
		bad("RCVHWM", "%d: must not be negative", c.RcvHWM)
	}
	if c.MaxMessageBytes < 1 {
		bad("MAX_MESSAGE_BYTES", "%d: must be at least 1", c.MaxMessageBytes)
	} else if c.MaxSizeMB >= 1 && maxLine(c.MaxMessageBytes) > int64(c.MaxSizeMB)<<20 {
		bad("MAX_MESSAGE_BYTES", "%d: an escaped line of that size (up to %d bytes) would not fit in AGG_MAX_SIZE_MB=%d",
			c.MaxMessageBytes, maxLine(c.MaxMessageBytes), c.MaxSizeMB)
	}
	if c.QueueBatches < 1 {
		bad("QUEUE_BATCHES", "%d: must be at least 1", c.QueueBatches)
	}
	if c.IOThreads < 1 || c.IOThreads > 64 {
		bad("IO_THREADS", "%d: must be between 1 and 64", c.IOThreads)
	}
	c.KeyFiles.Validate(problems)
	c.NATS.Validate(problems)
	if c.HTTPAddr != "" {
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
			bad("HTTP_ADDR", "%q: want host:port, e.g. 127.0.0.1:9780", c.HTTPAddr)
		}
	}
	levelErr, formatErr := cli.CheckLog(c.LogLevel, c.LogFormat)
	problems.AddErr("LOG_LEVEL", levelErr)
	problems.AddErr("LOG_FORMAT", formatErr)
	return problems.Err()
}

// Each reconnect attempt costs libzmq's I/O thread CPU, which adds up with
// a thousand endpoints nobody listens on (docs/performance.md: an idle
// daemon's CPU with them absent); the automatic back-off cap keeps the
// attempts to about maxAttemptsPerSecond.
const maxAttemptsPerSecond = 500

// reconnectMax is the effective AGG_RECONNECT_MAX.
func (c *Config) reconnectMax() time.Duration {
	if c.ReconnectMax != 0 {
		return c.ReconnectMax
	}
	connect := len(c.Connect) + len(c.PullConnect)
	return max(time.Second, time.Duration(connect)*time.Second/maxAttemptsPerSecond)
}

// endpoint is one configured endpoint and the variable that names it.
type endpoint struct {
	name       string
	bind, pull bool
	key        string
}

// endpoints lists every configured endpoint: SUB connect and bind, then
// PULL connect and bind.
func (c *Config) endpoints() []endpoint {
	var eps []endpoint
	for _, l := range []struct {
		list       []string
		bind, pull bool
		key        string
	}{
		{c.Connect, false, false, "CONNECT"},
		{c.Bind, true, false, "BIND"},
		{c.PullConnect, false, true, "PULL_CONNECT"},
		{c.PullBind, true, true, "PULL_BIND"},
	} {
		for _, ep := range l.list {
			eps = append(eps, endpoint{ep, l.bind, l.pull, l.key})
		}
	}
	return eps
}

// subscribers are the sockets the daemon makes for the configured
// endpoints (see ingest.Group), each with base's settings.
func (c *Config) subscribers(base ingest.Options) []ingest.Options {
	var opts []ingest.Options
	for _, ep := range c.endpoints() {
		o := base
		o.Endpoints, o.Bind, o.Pull = []string{ep.name}, ep.bind, ep.pull
		opts = append(opts, o)
	}
	return ingest.Group(opts, ingest.ConnectSockets)
}

// maxLine is the longest line a message of n bytes can become: JSON writes
// a control byte as 6 (\u00XX), the text format any byte as at most 4.
func maxLine(n int) int64 { return 6*int64(n) + lineOverhead }

func dupes(items []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range items {
		if seen[s] {
			out = append(out, s)
		}
		seen[s] = true
	}
	return out
}

// checkEnvironment checks what Validate cannot: that the log directory is
// there and writable, and that key files hold keys.
func (c *Config) checkEnvironment() error {
	problems := envconf.NewProblems(envPrefix)
	if c.LogFile != "" { // Validate reports an empty path
		problems.AddErr("LOG_FILE", checkLogDir(c.LogFile))
	}
	connect, bind := len(c.Connect)+len(c.PullConnect), len(c.Bind)+len(c.PullBind)
	need, limit := ingest.FilesNeeded(connect, bind, len(c.subscribers(ingest.Options{}))), fileLimit()
	if need > limit {
		key := "CONNECT"
		if bind > connect {
			key = "BIND"
		}
		problems.Add(key, "%d endpoints need at least %d open files, but this process may open only %d (RLIMIT_NOFILE): raise LimitNOFILE= in the unit, or ulimit -n",
			connect+bind, need, limit)
	} else if tpl, err := route.Parse(c.LogFile); err == nil && !tpl.Static() && need+2*c.MaxOpenFiles+logFilesReserve > limit {
		problems.Add("MAX_OPEN_FILES", "%d log files (two descriptors each) and the endpoints' %d need more open files than this process may have, %d (RLIMIT_NOFILE): lower it, or raise LimitNOFILE= in the unit",
			c.MaxOpenFiles, need, limit)
	}
	c.NATS.CheckFiles(problems)
	if c.WebConfig != "" {
		problems.AddErr("WEB_CONFIG_FILE", web.Validate(c.WebConfig))
	}
	_, err := c.KeyFiles.Load(envPrefix)
	return errors.Join(problems.Err(), err)
}

// logFilesReserve is what a file per source leaves for everything else
// the daemon opens: the directory, backups being compressed, state files,
// HTTP and NATS connections.
const logFilesReserve = 64

// fileLimit is how many files the daemon may have open: the hard limit,
// since the Go runtime raises the soft limit to it at start.
func fileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max > 1<<30 {
		return 1 << 30
	}
	return int(lim.Max)
}

func checkLogDir(path string) error {
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("directory %s: %w", dir, err)
	case !info.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := syscall.Access(dir, 0x2 /* W_OK */); err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// Location is the time zone of the timestamps.
func (c *Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// printUsage writes the help text: flags, then every variable with its
// type, default and meaning.
func printUsage(w io.Writer) {
	fmt.Fprintf(w, `aggregator subscribes to ZeroMQ publishers and appends every message, stamped
with its receive time, as one line to a rotating log file.

Usage: aggregator [-check-config | -version | -help]
       aggregator read [flags] FILE...   read the logs back (aggregator read -help)

  -check-config  check the configuration and the log directory, then exit:
                 0 if good, 78 (EX_CONFIG) naming every problem
  -version       print the version and exit
  -help          print this help and exit

`)
	envconf.PrintTable(w, envPrefix, &Config{})
	fmt.Fprintf(w, "\nSignals: SIGHUP reopens the log file (for logrotate); SIGTERM and SIGINT stop\nafter writing every message received.\n")
}

// knownVariables lists every variable the daemon reads.
func knownVariables() []string { return envconf.Keys(envPrefix, &Config{}) }

// LogValue shows the configuration in the start-up log line: the daemon's
// role, then every setting (envconf.Attrs), secrets as whether they are set.
func (c Config) LogValue() slog.Value {
	role := "standalone"
	switch {
	case c.NATS.Consuming():
		role = "central"
	case c.NATS.Enabled():
		role = "edge"
	}
	return slog.GroupValue(append([]slog.Attr{slog.String("role", role)}, envconf.Attrs(envPrefix, &c)...)...)
}
