package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"aggregator/internal/eventually"
	"aggregator/internal/sink"
	"aggregator/internal/zmqtest"
)

// kill is SIGKILL: the process has no chance to save or sync anything.
func (p *proc) kill() {
	p.t.Helper()
	p.cmd.Process.Kill()
	<-p.done
}

// sendPaced publishes n lines named by prefix in the background, pausing
// after every 500; the channel closes when the last is sent.
func sendPaced(pub *zmqtest.Publisher, prefix string, n int, pause time.Duration) <-chan struct{} {
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		pad := strings.Repeat("y", 60)
		for i := range n {
			pub.Send([]byte(fmt.Sprintf("%s %d %s", prefix, i, pad)))
			if i%500 == 499 {
				time.Sleep(pause)
			}
		}
	}()
	return sent
}

// TestCrashesLoseNothingAndWriteNothingTwice: an edge forwards while a
// publisher sends, the central is killed with SIGKILL 8 times and the edge
// 3 times, each restarted at once as systemd would; then the central's
// state file is truncated, then emptied. Each time the central's files end
// equal to the edge's (none missing, none twice), within seconds of the
// last kill.
func TestCrashesLoseNothingAndWriteNothingTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server")
	}
	ns := startNATS(t)
	_, bindEP := publishers(t)
	edgeEnv := map[string]string{
		"AGG_BIND": bindEP, "AGG_NATS_URL": ns.url(), "AGG_NATS_EDGE": "edge1",
		"AGG_MAX_SIZE_MB": "1", "AGG_MAX_BACKUPS": "0", "AGG_LOG_FILE": t.TempDir() + "/subscriber.log", "AGG_HTTP_ADDR": freeAddr(t),
	}
	centralEnv := map[string]string{
		"AGG_NATS_URL": ns.url(), "AGG_NATS_CONSUME": "AGGREGATOR", "AGG_MAX_BACKUPS": "0",
		"AGG_MAX_SIZE_MB": "1", "AGG_LOG_FILE": t.TempDir() + "/central.log", "AGG_HTTP_ADDR": freeAddr(t),
	}
	edge := startAgg(t, edgeEnv)
	pub := connectTo(t, bindEP)
	subscribed(t, pub)
	pub.Send([]byte("first"))
	edge.waitMetric("aggregator_forward_lines_total", 1) // the stream exists
	central := startAggNotReady(t, centralEnv)

	// converged waits until the central holds every line the edge wrote,
	// then compares them all; it returns how long that took.
	converged := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		edgeLines := func() int {
			n := 0
			if sink.ReadLines(edgeEnv["AGG_LOG_FILE"], func(string, []byte) { n++ }) != nil {
				return -1
			}
			return n
		}
		eventually.Within(t, 60*time.Second, what+": the central holds every line", func() bool {
			n := 0
			err := sink.ReadLines(centralEnv["AGG_LOG_FILE"], func(string, []byte) { n++ })
			return err == nil && edge.metric("aggregator_forward_lag_bytes") == 0 && n >= edgeLines()
		})
		took := time.Since(start)
		time.Sleep(500 * time.Millisecond) // anything more would be a duplicate
		want := bytes.ReplaceAll(logBytes(t, edgeEnv["AGG_LOG_FILE"]), []byte("Z "), []byte("Z edge1 "))
		sameLines(t, logBytes(t, centralEnv["AGG_LOG_FILE"]), want)
		return took
	}

	// The publisher sends 60,000 lines over about 12 s; the kills fall
	// in the middle of it, about 1 s apart.
	sent := sendPaced(pub, "line", 60_000, 100*time.Millisecond)
	var lastKill time.Time
	for i := range 11 {
		time.Sleep(time.Duration(700+i*37%300) * time.Millisecond)
		if i%4 == 3 {
			edge.kill()
			edge = startAgg(t, edgeEnv)
		} else {
			central.kill()
			central = startAggNotReady(t, centralEnv)
		}
		lastKill = time.Now()
	}
	<-sent
	took := converged("after 8 kills of the central and 3 of the edge")
	t.Logf("converged %v after the publisher finished, %v after the last kill", took, time.Since(lastKill)-500*time.Millisecond)
	if took > 5*time.Second {
		t.Errorf("took %v to converge, want under 5 s", took)
	}

	// Kills the moment the central has rotated: its backup is being
	// compressed, and the next window is going to the new file.
	sent = sendPaced(pub, "rotating", 40_000, 50*time.Millisecond)
	rotationKills := 0
	for deadline := time.Now().Add(30 * time.Second); rotationKills < 2 && time.Now().Before(deadline); {
		if strings.Contains(central.stderr.String(), "msg=rotated") {
			central.kill()
			central = startAggNotReady(t, centralEnv)
			rotationKills++
		}
		time.Sleep(time.Millisecond)
	}
	<-sent
	if rotationKills < 2 {
		t.Errorf("the central rotated %d times while lines came, want 2 kills at a rotation", rotationKills)
	}
	t.Logf("converged %v after %d kills at a rotation", converged("after kills at a rotation"), rotationKills)

	// A damaged state file: the central resumes from the one before it.
	for _, damage := range []string{"truncated", "empty"} {
		central.kill()
		state := centralEnv["AGG_LOG_FILE"] + ".consumed"
		data, err := os.ReadFile(state)
		if err != nil {
			t.Fatal(err)
		}
		if damage == "truncated" {
			data = data[:len(data)/2]
		} else {
			data = nil
		}
		if err := os.WriteFile(state, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for i := range 2000 {
			pub.Send([]byte(fmt.Sprintf("after %s %d", damage, i)))
		}
		central = startAggNotReady(t, centralEnv)
		converged("a " + damage + " state file")
	}

	// Both the state and the one before it damaged: the central refuses
	// to start rather than take the stream again from its start.
	central.kill()
	state := centralEnv["AGG_LOG_FILE"] + ".consumed"
	os.WriteFile(state, []byte("{"), 0o600)
	os.WriteFile(state+".prev", nil, 0o600)
	cmd, stderr, _ := command(t, centralEnv)
	if code := exitCode(cmd.Run()); code == 0 || !strings.Contains(stderr.String(), "damaged") {
		t.Errorf("exit %d with both state files damaged:\n%s", code, stderr)
	}
}

// TestResendPastTheDuplicateWindow: a chunk an edge sends again after the
// stream has forgotten its ID (an outage longer than the duplicate
// window; here a stream with a window of 1 s) is stored twice by
// JetStream, and written once by the central, which knows it by the
// edge's file and offset.
func TestResendPastTheDuplicateWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server")
	}
	ns := startNATS(t)
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AGGREGATOR", Subjects: []string{"aggregator.lines.*"}, Duplicates: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, bindEP := publishers(t)
	edgeEnv := map[string]string{
		"AGG_BIND": bindEP, "AGG_NATS_URL": ns.url(), "AGG_NATS_EDGE": "edge1",
		"AGG_LOG_FILE": t.TempDir() + "/subscriber.log", "AGG_HTTP_ADDR": freeAddr(t),
	}
	centralEnv := map[string]string{
		"AGG_NATS_URL": ns.url(), "AGG_NATS_CONSUME": "AGGREGATOR",
		"AGG_LOG_FILE": t.TempDir() + "/central.log", "AGG_HTTP_ADDR": freeAddr(t),
	}
	edge := startAgg(t, edgeEnv)
	central := startAggNotReady(t, centralEnv)
	pub := connectTo(t, bindEP)
	subscribed(t, pub)
	for i := range 3000 {
		pub.Send([]byte(fmt.Sprintf("line %d", i)))
	}
	edge.waitMetric("aggregator_forward_lines_total", 3000)
	central.waitMetric("aggregator_consume_lines_total", 3000)
	before := logBytes(t, centralEnv["AGG_LOG_FILE"])

	// The edge's resend, as it would come after a long outage: every
	// chunk again, same data, same headers, the duplicate window past.
	time.Sleep(1500 * time.Millisecond)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(m.Subject)
		msg.Data, msg.Header = m.Data, m.Header
		if ack, err := js.PublishMsg(ctx, msg); err != nil || ack.Duplicate {
			t.Fatalf("resend of %d: %v (duplicate %v): the stream should take it again", seq, err, ack != nil && ack.Duplicate)
		}
	}
	chunks := int(info.State.LastSeq - info.State.FirstSeq + 1)
	central.waitMetric("aggregator_consume_redelivered_total", float64(chunks))
	time.Sleep(500 * time.Millisecond)
	sameLines(t, logBytes(t, centralEnv["AGG_LOG_FILE"]), before)
	t.Logf("%d chunks sent again past the duplicate window: stored again by JetStream, written once", chunks)
}
