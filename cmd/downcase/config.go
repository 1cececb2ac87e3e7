package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"aggregator/internal/cli"
	"aggregator/internal/curve"
	"aggregator/internal/envconf"
	"aggregator/internal/ingest"
)

const envPrefix = "DOWNCASE"

// Config is read from DOWNCASE_* variables; `downcase -help` prints them.
type Config struct {
	HTTPAddr   string   `envconfig:"HTTP_ADDR" default:":5000" desc:"host:port the HTTP API listens on (also serves /metrics, /-/healthy, /-/ready)"`
	WebConfig  string   `envconfig:"WEB_CONFIG_FILE" desc:"the HTTP server's TLS and authentication: a web configuration file of Prometheus' exporter-toolkit (tls_server_config, bcrypt basic_auth_users); empty: plain HTTP"`
	PubBind    []string `envconfig:"PUB_BIND" default:"tcp://*:4444" desc:"comma-separated endpoints the PUB socket binds (subscribers such as aggregator connect here); empty for none"`
	PubConnect []string `envconfig:"PUB_CONNECT" desc:"comma-separated endpoints the PUB socket connects to (an aggregator's AGG_BIND)"`
	Topic      string   `envconfig:"TOPIC" desc:"if set, each message is sent as two frames: this topic, then the text"`
	curve.KeyFiles
	MaxParamBytes int           `envconfig:"MAX_PARAM_BYTES" default:"4096" desc:"longest accepted param, in bytes; longer gets 414"`
	QueueLength   int           `envconfig:"QUEUE_LENGTH" default:"10000" desc:"messages waiting for the publisher; when full, a message is dropped and counted, and the request still succeeds"`
	SndHWM        int           `envconfig:"SNDHWM" default:"100000" desc:"ZeroMQ send high-water mark per subscriber, in messages (0 means no limit)"`
	HoldMessages  int           `envconfig:"HOLD_MESSAGES" default:"1000" desc:"messages kept while no subscriber wants them, sent when one subscribes; beyond it the oldest is dropped and counted (no_subscriber); 0 drops at once"`
	HoldFor       time.Duration `envconfig:"HOLD_FOR" default:"60s" desc:"longest a message is kept waiting for a subscriber; then it is dropped and counted (no_subscriber)"`
	Linger        time.Duration `envconfig:"LINGER" default:"2s" desc:"on stop, how long queued messages may take to reach subscribers"`
	LogLevel      string        `envconfig:"LOG_LEVEL" default:"info" desc:"log level on stderr: debug, info, warn or error"`
	LogFormat     string        `envconfig:"LOG_FORMAT" default:"text" desc:"log format on stderr: text or json"`
}

// loadConfig reads and checks the environment and the key files it names,
// reporting every problem in one round.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	err := envconf.Process(envPrefix, &cfg, lookup)
	cfg.PubBind = envconf.TrimList(cfg.PubBind)
	cfg.PubConnect = envconf.TrimList(cfg.PubConnect)
	_, keyErr := cfg.KeyFiles.Load(envPrefix)
	var webErr error
	if cfg.WebConfig != "" {
		if err := web.Validate(cfg.WebConfig); err != nil {
			webErr = fmt.Errorf("%s_WEB_CONFIG_FILE: %w", envPrefix, err)
		}
	}
	return cfg, errors.Join(err, cfg.Validate(), keyErr, webErr)
}

// Validate names the variable in each problem.
func (c *Config) Validate() error {
	problems := envconf.NewProblems(envPrefix)
	bad := problems.Add
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTP_ADDR", "%q: want host:port, e.g. :5000", c.HTTPAddr)
	}
	for _, ep := range c.PubBind {
		if err := ingest.CheckEndpoint(ep, true); err != nil {
			bad("PUB_BIND", "%v", err)
		}
	}
	for _, ep := range c.PubConnect {
		if err := ingest.CheckEndpoint(ep, false); err != nil {
			bad("PUB_CONNECT", "%v", err)
		}
	}
	if len(c.PubBind)+len(c.PubConnect) == 0 {
		bad("PUB_BIND", "no endpoint to publish on: set DOWNCASE_PUB_BIND or DOWNCASE_PUB_CONNECT")
	}
	c.KeyFiles.Validate(problems)
	// One socket does all binds and connects: with a key, every endpoint
	// is encrypted, so connects need the server's public key.
	if c.SecretKeyFile != "" && c.ServerPublicKeyFile == "" && len(c.PubConnect) > 0 {
		bad("CURVE_SERVER_PUBLIC_KEY_FILE", "needed for DOWNCASE_PUB_CONNECT when DOWNCASE_CURVE_SECRET_KEY_FILE is set")
	}
	if c.MaxParamBytes < 1 {
		bad("MAX_PARAM_BYTES", "%d: must be at least 1", c.MaxParamBytes)
	}
	if c.HoldMessages < 0 {
		bad("HOLD_MESSAGES", "%d: must not be negative", c.HoldMessages)
	}
	if c.HoldFor <= 0 {
		bad("HOLD_FOR", "%s: must be more than 0s", c.HoldFor)
	}
	if c.QueueLength < 1 {
		bad("QUEUE_LENGTH", "%d: must be at least 1", c.QueueLength)
	}
	if c.SndHWM < 0 {
		bad("SNDHWM", "%d: must not be negative", c.SndHWM)
	}
	if c.Linger < 0 {
		bad("LINGER", "%s: must not be negative", c.Linger)
	}
	levelErr, formatErr := cli.CheckLog(c.LogLevel, c.LogFormat)
	problems.AddErr("LOG_LEVEL", levelErr)
	problems.AddErr("LOG_FORMAT", formatErr)
	return problems.Err()
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, `downcase answers GET /downcase/?param=HeLLo with "lower case of HeLLo is hello"
and publishes the same text on a ZeroMQ PUB socket.

Usage: downcase [-check-config | -version | -help]

  -check-config  check the configuration, then exit 0, or 78 naming every problem
  -version       print the version and exit
  -help          print this help and exit

`)
	envconf.PrintTable(w, envPrefix, &Config{})
}

func knownVariables() []string { return envconf.Keys(envPrefix, &Config{}) }
