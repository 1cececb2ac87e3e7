package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"aggregator/internal/sink"
)

// catchUp is one run of a backlog: an edge forwards n lines to a stream
// nobody reads, then a central starts and writes them all.
type catchUp struct {
	edge    time.Duration // from the first send until the stream acknowledged the last line
	central time.Duration // from the central's start until it had written the last line
	t       tally         // the central's file
}

// runCatchUp measures a central catching up on a backlog of n lines
// against the rate at which one edge forwarded them, in one run on one
// nats-server. The central's file is then checked line by line.
// With perEdge the central writes {edge}.log (a file per edge, its state
// saved before and after each batch) instead of one file.
func runCatchUp(bins binaries, n, size int, perEdge bool) (catchUp, error) {
	var r catchUp
	urls, stop, err := natsServers(1)
	defer stop()
	if err != nil {
		return r, err
	}
	pubs, err := newPublishers(1)
	if err != nil {
		return r, err
	}
	defer pubs.close()
	edge, err := startDaemon(bins.aggregator, map[string]string{
		"AGG_CONNECT":     pubs.endpoints()[0],
		"AGG_NATS_URL":    urls,
		"AGG_NATS_EDGE":   "edge1",
		"AGG_MAX_SIZE_MB": "100000",
	})
	if err != nil {
		return r, err
	}
	defer edge.cleanup()
	defer edge.kill()
	if err := pubs.waitSubscribed(); err != nil {
		return r, err
	}
	// One line first, so the stream exists before the clock starts; it is
	// not in the benchmark's format and is counted as malformed below.
	if err := pubs[0].Send([]byte("warm-up")); err != nil {
		return r, err
	}
	if err := waitFor(time.Minute, 10*time.Millisecond, func() bool {
		return edge.metric("aggregator_forward_lines_total") >= 1
	}); err != nil {
		return r, fmt.Errorf("the stream never took a line")
	}
	start := time.Now()
	if err := pubs.sendAll(n, size); err != nil {
		return r, err
	}
	if err := waitFor(5*time.Minute, 5*time.Millisecond, func() bool {
		return edge.metric("aggregator_forward_lines_total") >= float64(n+1)
	}); err != nil {
		return r, fmt.Errorf("edge forwarded %v of %d", edge.metric("aggregator_forward_lines_total"), n+1)
	}
	r.edge = time.Since(start)
	if err := edge.stop(); err != nil {
		return r, err
	}

	env := map[string]string{
		"AGG_CONNECT":      "",
		"AGG_NATS_URL":     urls,
		"AGG_NATS_CONSUME": "AGGREGATOR",
		"AGG_MAX_SIZE_MB":  "100000",
	}
	var dir string
	if perEdge {
		if dir, err = os.MkdirTemp("", "bench-central"); err != nil {
			return r, err
		}
		defer os.RemoveAll(dir)
		env["AGG_LOG_FILE"] = filepath.Join(dir, "{edge}.log")
	}
	start = time.Now()
	central, err := startDaemon(bins.aggregator, env)
	if err != nil {
		return r, err
	}
	defer central.cleanup()
	defer central.kill()
	if err := waitFor(5*time.Minute, 5*time.Millisecond, func() bool {
		return central.metric("aggregator_lines_written_total") >= float64(n+1)
	}); err != nil {
		return r, fmt.Errorf("central wrote %v of %d", central.metric("aggregator_lines_written_total"), n+1)
	}
	r.central = time.Since(start)
	if err := central.stop(); err != nil {
		return r, err
	}
	path := central.log
	if perEdge {
		path = filepath.Join(dir, "edge1.log")
	}
	r.t, err = verifyCentralLog(path, 1, n)
	if r.t.malformed > 0 {
		r.t.malformed-- // the warm-up line
	}
	return r, err
}

// verifyCentralLog is verifyLog for a central's file, whose text lines
// carry the edge's name after their time.
func verifyCentralLog(path string, p, n int) (tally, error) {
	v := newVerifier(p, n)
	err := sink.ReadLines(path, func(_ string, line []byte) { v.line(payloadOf(payloadOf(line))) })
	return v.result(), err
}
