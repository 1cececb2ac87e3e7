package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"aggregator/internal/curve"
	"aggregator/internal/envconf"
	"aggregator/internal/forward"
)

// TestShippedConfigMatchesBinary: configs/aggregator.env names every
// variable the daemon reads, no other, each with the real default.
func TestShippedConfigMatchesBinary(t *testing.T) {
	shipped, err := envconf.ReadFile("../../configs/aggregator.env")
	if err != nil {
		t.Fatal(err)
	}
	known := knownVariables()
	if got, want := slices.Sorted(maps.Keys(shipped)), slices.Sorted(slices.Values(known)); !slices.Equal(got, want) {
		t.Fatalf("configs/aggregator.env names %v\nthe binary reads     %v", got, want)
	}
	defaults := envconf.Defaults(envPrefix, &Config{})
	for k, v := range shipped {
		if defaults[k] != v {
			t.Errorf("%s: file says %q, default is %q", k, v, defaults[k])
		}
	}
}

// TestShippedConfigLoads loads the example file as systemd would (its
// values as the environment) and checks it is valid.
func TestShippedConfigLoads(t *testing.T) {
	shipped, err := envconf.ReadFile("../../configs/aggregator.env")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(lookupIn(shipped))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogFile != "subscriber.log" || len(cfg.Connect) != 1 || cfg.Connect[0] != "tcp://127.0.0.1:4444" || cfg.HTTPAddr != "127.0.0.1:9780" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	cfg := Config{
		Connect: []string{"tcp://*:1"}, Bind: []string{"udp://x:1"}, PullConnect: []string{"tcp://*:2"}, PullBind: []string{"tcp://h"}, LogFile: "", Format: "xml", TimeZone: "Mars/Olympus",
		MaxSizeMB: 0, MaxBackups: -1, MaxAgeDays: -1, RotateEvery: 1, FlushInterval: 0, SyncInterval: -1, RcvHWM: -1,
		MaxMessageBytes: 0, QueueBatches: 0, MaxOpenFiles: 0, MaxFiles: 0, ReconnectMax: time.Millisecond, HTTPAddr: "9780", LogLevel: "loud", LogFormat: "xml",
		KeyFiles: curve.KeyFiles{ServerPublicKeyFile: "/etc/aggregator/publishers.public"}, // without a secret key of our own
		NATS: forward.Config{URLs: []string{"http://x"}, Stream: "a b", Subject: "a.*", Replicas: 0, Edge: "a/b", Consume: "a.b", Durable: "x y",
			Partitions: -1, Partition: -2, Creds: "c", NKeySeed: "n", Password: "p", Cert: "c"},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, v := range knownVariables() {
		switch v {
		case "AGG_TOPICS", "AGG_COMPRESS", "AGG_STRIP_NEWLINE", "AGG_CURVE_SERVER_PUBLIC_KEY_FILE", "AGG_CURVE_ALLOWED_KEYS_FILE",
			"AGG_NATS_NKEY", "AGG_NATS_USER", "AGG_NATS_TOKEN", "AGG_NATS_CA", "AGG_NATS_KEY", "AGG_WEB_CONFIG_FILE": // files and combinations, reported under another name
			continue // any prefixes and any parsed boolean are valid; key files are read by checkEnvironment
		}
		if !containsLine(err.Error(), v+":") {
			t.Errorf("no problem reported for %s:\n%v", v, err)
		}
	}
}

func containsLine(s, prefix string) bool {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// lookupIn is an environment of just env, as run() takes it.
func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// The variables the program reads are those -help lists.
func TestReadsWhatHelpLists(t *testing.T) {
	if got, want := envconf.Names(envPrefix, &Config{}), knownVariables(); !slices.Equal(got, want) {
		t.Errorf("reads %v\n-help lists %v", got, want)
	}
}
