package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"aggregator/internal/zmqtest"
)

// TestThousandPublishersEachWay: one daemon, with its defaults, takes 1,000
// endpoints it connects to and 1,000 publishers connecting to its bind
// endpoint. Every message arrives once, every endpoint's connection shows
// in the metrics, the daemon runs a few threads rather than one per
// endpoint, and the connection events do not flood its log.
func TestThousandPublishersEachWay(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 publishers")
	}
	const n, each = 1000, 5
	var binders []*zmqtest.Publisher
	t.Cleanup(func() {
		for _, p := range binders {
			p.Close()
		}
	})
	var eps []string
	for range n {
		p, err := zmqtest.Bind()
		if err != nil {
			t.Fatal(err)
		}
		binders = append(binders, p)
		eps = append(eps, p.Endpoint)
	}
	_, bindEP := publishers(t)
	start := time.Now()
	d := startAgg(t, map[string]string{"AGG_CONNECT": strings.Join(eps, ","), "AGG_BIND": bindEP})
	t.Logf("ready %s after start with %d endpoints", time.Since(start).Round(time.Millisecond), n+1)
	connecters := make([]*zmqtest.Publisher, n)
	for i := range connecters {
		connecters[i] = connectTo(t, bindEP)
	}
	all := append(binders, connecters...)
	subscribed(t, all...)

	for seq := range each {
		for i, p := range all {
			if err := p.Send([]byte(fmt.Sprintf("p%d-%d", i, seq))); err != nil {
				t.Fatal(err)
			}
		}
	}
	d.waitMetric("aggregator_lines_written_total", float64(len(all)*each))

	// The endpoints share 32 sockets; each is still counted on its own.
	metrics := d.metrics()
	for _, ep := range eps {
		if c := metrics[`aggregator_endpoint_connections{endpoint="`+ep+`"}`]; c != 1 {
			t.Fatalf("%s has %v connections, want 1", ep, c)
		}
		if c := metrics[`aggregator_messages_received_total{endpoint="`+ep+`"}`]; c != each {
			t.Fatalf("%s has %v messages received, want %d", ep, c, each)
		}
	}
	if c := metrics[`aggregator_endpoint_connections{endpoint="`+bindEP+`"}`]; c != n {
		t.Errorf("the bind endpoint has %v connections, want %d", c, n)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			// GOMAXPROCS, the receive loops, libzmq's I/O thread and
			// reaper, and a few spare: nowhere near one per endpoint.
			if threads, _ := strconv.Atoi(strings.TrimSpace(v)); threads > 32 {
				t.Errorf("%d threads for %d endpoints", threads, n+1)
			}
		}
	}
	// One line per connect endpoint's connection; the bind endpoint's
	// 1,000 accepted connections make one line, then a summary.
	if lines := strings.Count(d.stderr.String(), "\n"); lines > n+50 {
		t.Errorf("%d log lines for %d connections", lines, 2*n)
	}
	if got := strings.Count(d.stderr.String(), "event=accepted"); got != 1 {
		t.Errorf("%d log lines for the bind endpoint's accepted connections, want 1", got)
	}

	if code := d.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	seen, _ := readMessages(t, d.log)
	for i := range all {
		for seq := range each {
			if c := seen[fmt.Sprintf("p%d-%d", i, seq)]; c != 1 {
				t.Fatalf("p%d-%d found %d times", i, seq, c)
			}
		}
	}
}

// TestConnectionFloodIsCountedNotLogged: garbage connections to a bind
// endpoint are counted in the metrics and summarised in the log, never
// logged one by one.
func TestConnectionFloodIsCountedNotLogged(t *testing.T) {
	_, bindEP := publishers(t)
	d := startAgg(t, map[string]string{"AGG_BIND": bindEP})
	addr := strings.TrimPrefix(bindEP, "tcp://")
	const n = 300
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.Close()
	}
	series := `aggregator_connection_events_total{endpoint="` + bindEP + `",event="disconnected"}`
	d.waitMetric(series, n)
	if c := d.metric(`aggregator_endpoint_connections{endpoint="` + bindEP + `"}`); c != 0 {
		t.Errorf("%v connections open after the flood, want 0", c)
	}
	if lines := strings.Count(d.stderr.String(), "\n"); lines > 10 {
		t.Errorf("%d log lines for %d bad connections:\n%s", lines, n, d.stderr.String())
	}
}

// TestCheckConfigFileLimit: a file-descriptor limit too low for the
// configured endpoints is a configuration error that says what to raise.
func TestCheckConfigFileLimit(t *testing.T) {
	var eps []string
	for i := range 900 {
		eps = append(eps, fmt.Sprintf("tcp://127.0.0.1:%d", 20000+i))
	}
	cmd, stderr, _ := command(t, map[string]string{"AGG_CONNECT": strings.Join(eps, ",")})
	cmd.Args = []string{"sh", "-c", "ulimit -n 1024 && exec " + aggBin + " -check-config"}
	cmd.Path = "/bin/sh"
	if code := exitCode(cmd.Run()); code != 78 {
		t.Fatalf("exit %d, want 78; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr.String(), "AGG_CONNECT: 900 endpoints need at least") || !strings.Contains(stderr.String(), "LimitNOFILE=") {
		t.Errorf("stderr does not explain the file limit:\n%s", stderr)
	}
}
