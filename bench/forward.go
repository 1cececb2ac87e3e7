package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// natsServer starts a nats-server with JetStream on a free port, in a
// cluster of n (n = 1: alone); it returns the client URLs and a stop.
func natsServers(n int) (urls string, stop func(), err error) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats-server")
	}
	var cmds []*exec.Cmd
	var dirs, clients, cluster []string
	stop = func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}
	for range n {
		a, err := freeAddr()
		if err != nil {
			return "", stop, err
		}
		c, err := freeAddr()
		if err != nil {
			return "", stop, err
		}
		clients, cluster = append(clients, a), append(cluster, "nats://"+c)
	}
	for i := range n {
		dir, err := os.MkdirTemp("", "bench-nats")
		if err != nil {
			return "", stop, err
		}
		dirs = append(dirs, dir)
		_, port, _ := net.SplitHostPort(clients[i])
		args := []string{"-a", "127.0.0.1", "-p", port, "-js", "-sd", dir}
		if n > 1 {
			args = append(args, "-n", fmt.Sprintf("n%d", i), "--cluster_name", "bench", "--cluster", cluster[i], "--routes", strings.Join(cluster, ","))
		}
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			return "", stop, fmt.Errorf("%s: %w (scripts/install-deps --test builds it)", bin, err)
		}
		cmds = append(cmds, cmd)
	}
	for _, a := range clients {
		if err := waitFor(10*time.Second, 20*time.Millisecond, func() bool {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
			}
			return err == nil
		}); err != nil {
			return "", stop, fmt.Errorf("nats-server at %s: %w", a, err)
		}
	}
	return "nats://" + strings.Join(clients, ",nats://"), stop, nil
}

// runForward sends n messages as fast as one publisher goes to a daemon
// that forwards to a stream with the given replicas, and times until the
// last line is written and until JetStream has acknowledged it.
func runForward(bins binaries, n, replicas, size int) (written, forwarded time.Duration, err error) {
	urls, stop, err := natsServers(replicas)
	defer stop()
	if err != nil {
		return 0, 0, err
	}
	pubs, err := newPublishers(1)
	if err != nil {
		return 0, 0, err
	}
	defer pubs.close()
	d, err := startDaemon(bins.aggregator, map[string]string{
		"AGG_CONNECT":       pubs.endpoints()[0],
		"AGG_NATS_URL":      urls,
		"AGG_NATS_REPLICAS": fmt.Sprint(replicas),
		"AGG_MAX_SIZE_MB":   "100000",
	})
	if err != nil {
		return 0, 0, err
	}
	defer d.cleanup()
	defer d.kill()
	if err := pubs.waitSubscribed(); err != nil {
		return 0, 0, err
	}
	// A fresh cluster elects its leaders first: one line forwarded says
	// the stream is there, and the clock starts after it.
	if err := pubs.sendAll(1, size); err != nil {
		return 0, 0, err
	}
	if err := waitFor(time.Minute, 10*time.Millisecond, func() bool {
		return d.metric("aggregator_forward_lines_total") >= 1
	}); err != nil {
		return 0, 0, fmt.Errorf("the stream never took a line")
	}
	start := time.Now()
	if err := pubs.sendAll(n, size); err != nil {
		return 0, 0, err
	}
	if err := waitFor(2*time.Minute, time.Millisecond, func() bool {
		return d.metric("aggregator_lines_written_total") >= float64(n+1)
	}); err != nil {
		return 0, 0, fmt.Errorf("written: %v of %d", d.metric("aggregator_lines_written_total"), n+1)
	}
	written = time.Since(start)
	if err := waitFor(5*time.Minute, 5*time.Millisecond, func() bool {
		return d.metric("aggregator_forward_lines_total") >= float64(n+1)
	}); err != nil {
		return 0, 0, fmt.Errorf("forwarded: %v of %d", d.metric("aggregator_forward_lines_total"), n)
	}
	forwarded = time.Since(start)
	return written, forwarded, d.stop()
}
