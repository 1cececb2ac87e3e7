package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"aggregator/internal/eventually"
	"aggregator/internal/sink"
)

// natsServer is a real nats-server (scripts/install-deps --test builds
// it) with JetStream, on loopback.
type natsServer struct {
	t     *testing.T
	addr  string
	dir   string
	extra []string // cluster arguments
	cmd   *exec.Cmd
}

func natsServerBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats-server")
	if _, err := os.Stat(p); err != nil {
		t.Fatal("nats-server is missing: run scripts/install-deps --test")
	}
	return p
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	s := &natsServer{t: t, addr: freeAddr(t), dir: t.TempDir()}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *natsServer) url() string { return "nats://" + s.addr }

func (s *natsServer) start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.addr)
	s.cmd = exec.Command(natsServerBinary(s.t), append([]string{"-a", "127.0.0.1", "-p", port, "-js", "-sd", s.dir}, s.extra...)...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	eventually.Within(s.t, 10*time.Second, "nats-server listens", func() bool {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (s *natsServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// streamBytes reads every message of the stream in order and joins their
// payloads: the lines forwarded, as JetStream holds them.
func streamBytes(t *testing.T, url, stream string) []byte {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		out.Write(m.Data)
	}
	return out.Bytes()
}

// logBytes is every line the daemon wrote, oldest file first.
func logBytes(t *testing.T, path string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := sink.ReadLines(path, func(_ string, line []byte) {
		out.Write(line)
		out.WriteByte('\n')
	}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func sameLines(t *testing.T, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		gl, wl := bytes.Split(got, []byte{'\n'}), bytes.Split(want, []byte{'\n'})
		for i := range min(len(gl), len(wl)) {
			if !bytes.Equal(gl[i], wl[i]) {
				t.Fatalf("line %d differs: the stream holds %q, the files %q (%d and %d lines)", i, gl[i], wl[i], len(gl)-1, len(wl)-1)
			}
		}
		t.Fatalf("the stream holds %d lines (%d bytes), the files %d lines (%d bytes)", len(gl)-1, len(got), len(wl)-1, len(want))
	}
}

// TestForwardSurvivesNATSOutageAndRestart: every line written reaches the
// stream once and in order, through a NATS outage of seconds (the daemon
// keeps writing, says it is not ready, and catches up), rotations with
// gzip, and a restart of the daemon (it resumes from its checkpoint).
func TestForwardSurvivesNATSOutageAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server")
	}
	ns := startNATS(t)
	bound, bindEP := publishers(t)
	_ = bound
	env := map[string]string{
		"AGG_BIND":        bindEP,
		"AGG_NATS_URL":    ns.url(),
		"AGG_NATS_EDGE":   "edge1",
		"AGG_MAX_SIZE_MB": "1",
		"AGG_MAX_BACKUPS": "2", // backups wait for forwarding, then go
		"AGG_LOG_FILE":    t.TempDir() + "/subscriber.log",
		"AGG_HTTP_ADDR":   freeAddr(t),
	}
	d := startAgg(t, env)
	pub := connectTo(t, bindEP)
	subscribed(t, pub)
	sent, written := 0, 0 // written: by this daemon process
	send := func(n int) {
		for range n {
			if err := pub.Send([]byte(fmt.Sprintf("line %d %s", sent, strings.Repeat("x", 80)))); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		written += n
		d.waitMetric("aggregator_lines_written_total", float64(written))
	}

	send(10_000)
	d.waitMetric("aggregator_forward_lines_total", 10_000)

	ns.kill()
	send(40_000) // written while NATS is down: four rotations, more than AGG_MAX_BACKUPS
	eventually.Within(t, 10*time.Second, "/-/ready says forwarding fails", func() bool {
		code, body := httpGet(t, "http://"+d.http+"/-/ready")
		return code == 503 && strings.Contains(body, "forwarding")
	})
	time.Sleep(10 * time.Second) // NATS stays down for 10 s
	ns.start()
	d.waitMetric("aggregator_forward_lines_total", 50_000)
	eventually.Within(t, 10*time.Second, "/-/ready says 200 again", func() bool {
		code, _ := httpGet(t, "http://"+d.http+"/-/ready")
		return code == 200
	})

	// A restart of the daemon while lines are still being forwarded.
	send(20_000)
	// Its rotations remove the backups forwarded before; the compressor
	// does that in the background, after the lines are written.
	eventually.Within(t, 10*time.Second, "backups forwarded before are removed", func() bool {
		return d.metric("aggregator_backups_removed_total") > 0
	})
	removed := d.metric("aggregator_backups_removed_total")
	d.stop()
	d, written = startAgg(t, env), 0
	send(1)
	eventually.Within(t, 30*time.Second, "everything forwarded after the restart", func() bool {
		return d.metric("aggregator_forward_lag_bytes") == 0 && d.metric("aggregator_forward_lines_total") > 0
	})
	removed += d.metric("aggregator_backups_removed_total")
	if lost := d.metric("aggregator_backups_removed_unforwarded_total"); lost != 0 {
		t.Errorf("%v backups removed before they were forwarded", lost)
	}
	d.stop()
	// The stream holds every line once, in order; the files only the
	// newest (AGG_MAX_BACKUPS=2), so the stream is checked by content.
	stream := streamBytes(t, ns.url(), "AGGREGATOR")
	n := 0
	for line := range bytes.Lines(stream) {
		if want := fmt.Sprintf(" line %d x", n); !bytes.Contains(line, []byte(want)) {
			t.Fatalf("stream line %d is %q", n, line)
		}
		n++
	}
	if n != sent {
		t.Fatalf("the stream holds %d lines, %d were sent", n, sent)
	}
	files := logBytes(t, env["AGG_LOG_FILE"])
	if !bytes.HasSuffix(stream, files) {
		t.Errorf("the files' %d bytes are not the end of the stream", len(files))
	}
	if removed == 0 {
		t.Error("no backup was removed: retention did not run")
	}
	t.Logf("%d lines forwarded; %v backups removed after they were forwarded", sent, removed)
}

// TestForwardBadNATS: a URL nobody answers and a stream that does not take
// the subject give a clear reason on /-/ready, and the daemon keeps
// writing.
func TestForwardBadNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server")
	}
	t.Run("nobody there", func(t *testing.T) {
		bound, _ := publishers(t)
		d := startAggNotReady(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_NATS_URL": "nats://" + freeAddr(t)})
		eventually.Within(t, 10*time.Second, "503 naming forwarding", func() bool {
			code, body := httpGet(t, "http://"+d.http+"/-/ready")
			return code == 503 && strings.Contains(body, "forwarding")
		})
	})
	t.Run("stream takes other subjects", func(t *testing.T) {
		ns := startNATS(t)
		nc, err := nats.Connect(ns.url())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "AGGREGATOR", Subjects: []string{"other.>"}}); err != nil {
			t.Fatal(err)
		}
		bound, _ := publishers(t)
		d := startAggNotReady(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_NATS_URL": ns.url()})
		eventually.Within(t, 10*time.Second, "503 naming the subject", func() bool {
			code, body := httpGet(t, "http://"+d.http+"/-/ready")
			return code == 503 && strings.Contains(body, "aggregator.lines")
		})
	})
	t.Run("wrong password", func(t *testing.T) {
		ns := &natsServer{t: t, addr: freeAddr(t), dir: t.TempDir(), extra: []string{"--user", "edge", "--pass", "right"}}
		ns.start()
		t.Cleanup(ns.kill)
		bound, _ := publishers(t)
		d := startAggNotReady(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_NATS_URL": ns.url(),
			"AGG_NATS_USER": "edge", "AGG_NATS_PASSWORD": "wrong"})
		eventually.Within(t, 10*time.Second, "503 naming the authorization", func() bool {
			code, body := httpGet(t, "http://"+d.http+"/-/ready")
			return code == 503 && strings.Contains(body, "forwarding") && strings.Contains(strings.ToLower(body), "authorization")
		})
	})
	t.Run("check-config", func(t *testing.T) {
		cmd, stderr, _ := command(t, map[string]string{"AGG_CONNECT": "tcp://127.0.0.1:1", "AGG_NATS_URL": "http://x", "AGG_NATS_REPLICAS": "9", "AGG_NATS_CREDS": "/nonexistent.creds"}, "-check-config")
		if code := exitCode(cmd.Run()); code != 78 {
			t.Fatalf("exit %d", code)
		}
		for _, v := range []string{"AGG_NATS_URL", "AGG_NATS_REPLICAS", "AGG_NATS_CREDS"} {
			if !strings.Contains(stderr.String(), v) {
				t.Errorf("no %s in:\n%s", v, stderr)
			}
		}
	})
}

// natsCluster is three nats-servers routed into one JetStream cluster.
type natsCluster struct {
	servers []*natsServer
	names   []string
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	c := &natsCluster{}
	var routes []string
	clusterAddrs := make([]string, 3)
	for i := range 3 {
		clusterAddrs[i] = freeAddr(t)
		routes = append(routes, "nats://"+clusterAddrs[i])
	}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		s := &natsServer{t: t, addr: freeAddr(t), dir: t.TempDir(),
			extra: []string{"-n", name, "--cluster_name", "agg", "--cluster", "nats://" + clusterAddrs[i], "--routes", strings.Join(routes, ",")}}
		s.start()
		t.Cleanup(s.kill)
		c.servers = append(c.servers, s)
		c.names = append(c.names, name)
	}
	return c
}

func (c *natsCluster) urls() string {
	var u []string
	for _, s := range c.servers {
		u = append(u, s.url())
	}
	return strings.Join(u, ",")
}

// leader is the server that leads the stream's Raft group.
func (c *natsCluster) leader(t *testing.T, stream string) *natsServer {
	t.Helper()
	nc, err := nats.Connect(c.urls())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	for i, name := range c.names {
		if name == info.Cluster.Leader {
			return c.servers[i]
		}
	}
	t.Fatalf("no leader among %v: %q", c.names, info.Cluster.Leader)
	return nil
}

// TestCentralWritesTheStreamExactlyOnce: an edge forwards into a
// 3-replica stream on three servers and a central writes the stream to its
// own files. The stream's leader is killed with SIGKILL and comes back,
// the edge restarts, the central stops for 10 s: at the end the central's
// files hold exactly the lines the edge wrote, each with the edge's name,
// none missing, none twice.
func TestCentralWritesTheStreamExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nats-servers")
	}
	cluster := startNATSCluster(t)
	_, bindEP := publishers(t)
	edgeEnv := map[string]string{
		"AGG_BIND": bindEP, "AGG_NATS_URL": cluster.urls(), "AGG_NATS_REPLICAS": "3", "AGG_NATS_EDGE": "edge1",
		"AGG_MAX_SIZE_MB": "1", "AGG_LOG_FILE": t.TempDir() + "/subscriber.log", "AGG_HTTP_ADDR": freeAddr(t),
	}
	centralEnv := map[string]string{
		"AGG_NATS_URL": cluster.urls(), "AGG_NATS_CONSUME": "AGGREGATOR",
		"AGG_MAX_SIZE_MB": "1", "AGG_LOG_FILE": t.TempDir() + "/central.log", "AGG_HTTP_ADDR": freeAddr(t),
	}
	edge := startAggNotReady(t, edgeEnv)
	pub := connectTo(t, bindEP)
	subscribed(t, pub)
	sent, written := 0, 0
	send := func(n int) {
		for range n {
			if err := pub.Send([]byte(fmt.Sprintf("line %d %s", sent, strings.Repeat("y", 60)))); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		written += n
		edge.waitMetric("aggregator_lines_written_total", float64(written))
	}
	send(5000)
	edge.waitMetric("aggregator_forward_lines_total", 5000) // the stream exists
	central := startAggNotReady(t, centralEnv)

	leader := cluster.leader(t, "AGGREGATOR")
	leader.kill()
	send(5000)
	time.Sleep(time.Second)
	leader.start()

	edge.stop()
	edge, written = startAggNotReady(t, edgeEnv), 0
	send(5000)

	central.stop()
	send(5000)
	time.Sleep(10 * time.Second)
	central = startAggNotReady(t, centralEnv)
	send(5000)

	eventually.Within(t, 60*time.Second, "the central has every line", func() bool {
		// Read while the central writes: a backup may be gzipped between
		// listing and opening, so a failed read is just another try.
		lines := 0
		err := sink.ReadLines(centralEnv["AGG_LOG_FILE"], func(string, []byte) { lines++ })
		return err == nil && edge.metric("aggregator_forward_lag_bytes") == 0 && lines >= sent
	})
	time.Sleep(time.Second) // anything more would be a duplicate
	edge.stop()
	central.stop()
	want := bytes.ReplaceAll(logBytes(t, edgeEnv["AGG_LOG_FILE"]), []byte("Z line "), []byte("Z edge1 line "))
	sameLines(t, logBytes(t, centralEnv["AGG_LOG_FILE"]), want)
	t.Logf("%d lines through a leader kill, an edge restart and a central stopped for 10 s", sent)
}
