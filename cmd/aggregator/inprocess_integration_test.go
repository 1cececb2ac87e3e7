package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"aggregator/internal/eventually"
)

// inProcess is a daemon run by run() in this test's process, so that the
// race detector sees all of it when the suite runs under -race.
type inProcess struct {
	http   string
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func runInProcess(t *testing.T, env map[string]string) *inProcess {
	t.Helper()
	d := &inProcess{http: freeAddr(t), stderr: &syncBuffer{}, done: make(chan int, 1)}
	full := map[string]string{"AGG_HTTP_ADDR": d.http, "AGG_CONNECT": "", "AGG_LOG_LEVEL": "warn"}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() {
		var stdout syncBuffer
		d.done <- run(ctx, nil, lookupIn(full), &stdout, d.stderr)
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("daemon at %s:\n%s", d.http, d.stderr.String())
		}
	})
	eventually.Within(t, 10*time.Second, "the in-process daemon serves HTTP", func() bool {
		resp, err := http.Get("http://" + d.http + "/-/healthy")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return d
}

// stop cancels the daemon's context, as SIGTERM does, and returns its exit
// status.
func (d *inProcess) stop(t *testing.T) int {
	t.Helper()
	d.cancel()
	select {
	case code := <-d.done:
		d.done <- code
		return code
	case <-time.After(10 * time.Second):
		t.Fatal("the in-process daemon did not stop within 10s")
		return -1
	}
}

func (d *inProcess) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	p := &proc{t: t, http: d.http}
	return p.metrics()
}

// TestInProcessEdgeAndCentral runs an edge and a central in this process,
// through run() as main calls it: the edge takes messages from a
// publisher it connects to and one that connects to it, writes a file per
// topic that rotates and is compressed, and forwards to a real nats-server;
// the central writes what the stream holds to a file per edge. Scrapes and
// a SIGHUP happen while lines flow. Under -race (scripts/test), every
// goroutine of both daemons runs under the race detector.
func TestInProcessEdgeAndCentral(t *testing.T) {
	skipShort(t)
	nats := startNATS(t)
	dir := t.TempDir()
	for _, d := range []string{"edge", "central"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bound, bindEP := publishers(t)
	edge := runInProcess(t, map[string]string{
		"AGG_CONNECT":       bound.Endpoint,
		"AGG_BIND":          bindEP,
		"AGG_LOG_FILE":      filepath.Join(dir, "edge", "{topic:1}.log"),
		"AGG_MAX_SIZE_MB":   "1",
		"AGG_COMPRESS":      "zstd",
		"AGG_SYNC_INTERVAL": "50ms",
		"AGG_NATS_URL":      nats.url(),
		"AGG_NATS_EDGE":     "e1",
	})
	central := runInProcess(t, map[string]string{
		"AGG_NATS_URL":     nats.url(),
		"AGG_NATS_CONSUME": "AGGREGATOR",
		"AGG_LOG_FILE":     filepath.Join(dir, "central", "{edge}.log"),
	})
	conn := connectTo(t, bindEP)
	subscribed(t, bound, conn)

	const perPublisher = 6000
	pad := strings.Repeat("x", 400)
	var wg sync.WaitGroup
	for i, pub := range []interface {
		Send(...[]byte) error
	}{bound, conn} {
		wg.Go(func() {
			for n := range perPublisher {
				topic := fmt.Sprintf("t%d.INFO", n%3)
				if err := pub.Send([]byte(topic), fmt.Appendf(nil, "p%d-%d %s", i, n, pad)); err != nil {
					t.Error(err)
					return
				}
				if n%500 == 0 {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	// While it flows: scrapes of both, and a reopen (SIGHUP reaches both
	// daemons: each run() asked for it).
	stopScrapes := make(chan struct{})
	var scrapes sync.WaitGroup
	scrapes.Go(func() {
		for {
			select {
			case <-stopScrapes:
				return
			case <-time.After(20 * time.Millisecond):
				edge.metrics(t)
				central.metrics(t)
			}
		}
	})
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	wg.Wait()

	const total = 2 * perPublisher
	eventually.Within(t, 60*time.Second, "the central writes every line", func() bool {
		return central.metrics(t)["aggregator_consume_lines_total"] >= total
	})
	close(stopScrapes)
	scrapes.Wait()
	em := edge.metrics(t)
	if em["aggregator_lines_written_total"] != total || em["aggregator_rotations_total{reason=\"size\"}"] == 0 {
		t.Errorf("edge: %v lines written, %v rotations; want %d and some", em["aggregator_lines_written_total"], em["aggregator_rotations_total{reason=\"size\"}"], total)
	}
	if em["aggregator_reopens_total"] != 1 {
		t.Errorf("edge: %v reopens after one SIGHUP", em["aggregator_reopens_total"])
	}
	for name, d := range map[string]*inProcess{"edge": edge, "central": central} {
		if code := d.stop(t); code != 0 {
			t.Errorf("%s: exit %d", name, code)
		}
	}
	lines := logBytes(t, filepath.Join(dir, "central", "e1.log"))
	if n := strings.Count(string(lines), "\n"); n != total {
		t.Errorf("the central's e1.log holds %d lines, want %d", n, total)
	}
}
