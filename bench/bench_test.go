package main

import (
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every part of the benchmark on a few thousand messages,
// so that it cannot rot; the figures themselves are not checked here
// (speed is measured by `make bench`, never by a test).
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark")
	}
	var out strings.Builder
	if err := run(smokeConfig(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"peak N=5k P=1", "peak N=5k P=2", "rotate 1MB+gzip", "rotate 1MB+zstd", "latency at", "downcase under wrk", "connect endpoints, nobody listening", "forward to JetStream", "central catching up on a backlog", "syncing the live file", "a file per topic"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the table", want)
		}
	}
}

func TestMessageFormat(t *testing.T) {
	buf := formatMsg(nil, 3, 12345, time.Unix(0, 1795577526900810030).UnixNano(), 100)
	if len(buf) != 100 || !strings.HasPrefix(string(buf), "0003 0000012345 1795577526900810030 x") {
		t.Fatalf("%q", buf)
	}
	pub, seq, sent, ok := parseMsg(buf)
	if !ok || pub != 3 || seq != 12345 || sent != 1795577526900810030 {
		t.Fatalf("parse: %d %d %d %v", pub, seq, sent, ok)
	}
}

func TestVerifier(t *testing.T) {
	v := newVerifier(2, 4) // 2 publishers, 2 messages each
	for _, m := range [][2]int{{0, 1}, {0, 0}, {1, 0}, {1, 0}} {
		v.line(formatMsg(nil, m[0], m[1], 1, 40))
	}
	v.line([]byte("garbage"))
	got := v.result()
	if got.missing != 1 || got.duplicated != 1 || got.outOfOrder != 1 || got.malformed != 1 || got.lines != 5 || got.received != 4 {
		t.Fatalf("%+v", got)
	}
	if p0, p1 := got.perPub[0], got.perPub[1]; p0 != (count{received: 2, outOfOrder: 1}) || p1 != (count{received: 2, missing: 1, duplicated: 1}) {
		t.Fatalf("per publisher: %+v %+v", p0, p1)
	}
}
