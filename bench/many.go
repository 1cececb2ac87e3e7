package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"aggregator/internal/ingest"
	"aggregator/internal/zmqtest"
)

// manyResult is what the many-publishers scenario measured.
type manyResult struct {
	n int // endpoints the daemon connects to, and publishers connecting to its bind endpoint

	absentReady   time.Duration // start to /-/ready with n endpoints nobody listens on
	absentCPU     float64       // share of one core while those n are absent, after a warm-up
	absentThreads int

	ready         time.Duration // start to /-/ready with n publishers up
	silentCPU     float64       // share of one core with 2n publishers connected and silent
	silentThreads int
	silentRSS     int64
	connected     float64 // connect endpoints up (aggregator_endpoint_connections)
	onBind        float64 // publishers on the bind endpoint

	connectCPU, bindCPU float64 // share of one core while the n connect endpoints, then the n connecting publishers, send
	connectRSS, rss     int64   // peak RSS after the first load, and after both
	connectFiles        int64   // of the RSS after the first load, the mapped binary and libraries
	each                int     // messages each publisher sent
	t                   tally
}

// runMany measures one daemon with n connect endpoints and n publishers
// connecting to one bind endpoint. First, with nobody listening on the n
// endpoints: time to ready, then CPU and threads once the reconnect
// back-off has settled. Then with all 2n publishers: time to ready, CPU
// and threads while they are connected and silent; the n publishers that
// bind send rate messages a second each for dur, then the n that connect
// do the same. Every message is accounted for; peak RSS after each load.
func runMany(bins binaries, n, rate int, dur, idle time.Duration, size int) (manyResult, error) {
	r := manyResult{n: n}

	absent, err := distinctFreeEndpoints(n)
	if err != nil {
		return r, err
	}
	start := time.Now()
	d, err := startDaemon(bins.aggregator, map[string]string{"AGG_CONNECT": strings.Join(absent, ",")})
	if err != nil {
		return r, err
	}
	r.absentReady = time.Since(start)
	time.Sleep(idle) // the back-off grows to its maximum
	r.absentCPU, r.absentThreads = idleCost(d, idle)
	d.stop()
	d.cleanup()

	binders, err := newPublishers(n)
	if err != nil {
		return r, err
	}
	defer binders.close()
	bindEP, err := zmqtest.FreeTCPEndpoint()
	if err != nil {
		return r, err
	}
	start = time.Now()
	d, err = startDaemon(bins.aggregator, map[string]string{
		"AGG_CONNECT":     strings.Join(binders.endpoints(), ","),
		"AGG_BIND":        bindEP,
		"AGG_MAX_SIZE_MB": "100000",
	})
	if err != nil {
		return r, err
	}
	r.ready = time.Since(start)
	defer d.cleanup()
	defer d.kill()
	load := func(ps publishers, first int) (float64, error) {
		pid := d.cmd.Process.Pid
		cpu0, _ := cpuSeconds(pid)
		t0 := time.Now()
		each, err := ps.sendEvery(first, rate, dur, size)
		if err != nil {
			return 0, err
		}
		r.each = each
		want := float64((first + len(ps)) * each)
		if err := waitFor(time.Minute, 10*time.Millisecond, func() bool {
			return d.metric("aggregator_lines_written_total") >= want
		}); err != nil {
			return 0, fmt.Errorf("daemon wrote %v of %v lines", d.metric("aggregator_lines_written_total"), want)
		}
		cpu1, _ := cpuSeconds(pid)
		return (cpu1 - cpu0) / time.Since(t0).Seconds(), nil
	}

	// The n connect endpoints alone first: their memory is the figure the
	// performance doc gives for n endpoints.
	if err := binders.waitSubscribed(); err != nil {
		return r, err
	}
	if r.connectCPU, err = load(binders, 0); err != nil {
		return r, err
	}
	r.connectRSS, _ = peakRSS(d.cmd.Process.Pid)
	r.connectFiles, _ = procStatus(d.cmd.Process.Pid, "RssFile")
	r.connectFiles <<= 10
	if memDetail {
		printMemory(d.cmd.Process.Pid, d)
	}

	var connecters publishers
	defer func() { connecters.close() }()
	for range n {
		p, err := zmqtest.Connect(bindEP)
		if err != nil {
			return r, err
		}
		connecters = append(connecters, p)
	}
	if err := connecters.waitSubscribed(); err != nil {
		return r, err
	}
	r.silentCPU, r.silentThreads = idleCost(d, idle)
	r.connected, r.onBind = endpointsUp(d, bindEP)
	r.silentRSS, _ = procStatus(d.cmd.Process.Pid, "VmRSS")
	r.silentRSS <<= 10
	if r.bindCPU, err = load(connecters, n); err != nil {
		return r, err
	}
	r.rss, _ = peakRSS(d.cmd.Process.Pid)
	if err := d.stop(); err != nil {
		return r, err
	}
	r.t, err = verifyLog(d.log, 2*n, 2*n*r.each)
	return r, err
}

// distinctFreeEndpoints are n different loopback ports nobody listens on:
// all are held open while they are picked, so none comes twice.
func distinctFreeEndpoints(n int) ([]string, error) {
	var eps []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		eps = append(eps, "tcp://"+l.Addr().String())
	}
	return eps, nil
}

// idleCost is the daemon's CPU, as a share of one core, over d, and its
// thread count at the end.
func idleCost(d *daemon, dur time.Duration) (float64, int) {
	pid := d.cmd.Process.Pid
	cpu0, _ := cpuSeconds(pid)
	time.Sleep(dur)
	cpu1, _ := cpuSeconds(pid)
	n, _ := threads(pid)
	return (cpu1 - cpu0) / dur.Seconds(), n
}

// endpointsUp reads aggregator_endpoint_connections: how many connect
// endpoints are connected, and how many publishers the bind endpoint has.
func endpointsUp(d *daemon, bindEP string) (connected, onBind float64) {
	resp, err := http.Get("http://" + d.http + "/metrics")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(sb.String(), "\n") {
		rest, ok := strings.CutPrefix(line, `aggregator_endpoint_connections{endpoint="`)
		if !ok {
			continue
		}
		ep, val, _ := strings.Cut(rest, `"} `)
		var v float64
		fmt.Sscan(val, &v)
		switch {
		case ep == bindEP:
			onBind = v
		case ep == ingest.Unattributed:
		case v >= 1:
			connected++
		}
	}
	return connected, onBind
}
