package main

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"aggregator/internal/eventually"
	"aggregator/internal/queue"
	"aggregator/internal/route"
	"aggregator/internal/sink"
	"aggregator/internal/statefile"
	"aggregator/internal/subjects"
	"aggregator/internal/zmqtest"
)

// partitionOf is the partition JetStream's partition(n,1) gives an edge:
// FNV-1a of its subject token, modulo n (nats-server's getHashPartition).
func partitionOf(edge string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(subjects.Token(edge)))
	return int(h.Sum32() % uint32(n))
}

// edgesOnePerPartition names n edges that land on n different partitions.
func edgesOnePerPartition(n int) []string {
	names := make([]string, n)
	found := 0
	for i := 0; found < n; i++ {
		name := "edge-" + strconv.Itoa(i)
		if p := partitionOf(name, n); names[p] == "" {
			names[p] = name
			found++
		}
	}
	return names
}

// annotated is what a central writes for an edge's lines: its name after
// the time.
func annotated(t *testing.T, edgeLog, edge string) []byte {
	t.Helper()
	return bytes.ReplaceAll(logBytes(t, edgeLog), []byte("Z "), []byte("Z "+edge+" "))
}

func lineCount(path string) int {
	n := 0
	if sink.ReadLines(path, func(string, []byte) { n++ }) != nil {
		return -1
	}
	return n
}

// TestPartitionedCentrals: three edges, a stream of three partitions and
// three centrals, one per partition; one central is killed with SIGKILL
// twice while lines come. Each central ends holding exactly the lines of
// the edge of its partition, each once, in order.
func TestPartitionedCentrals(t *testing.T) {
	skipShort(t)
	const parts = 3
	ns := startNATS(t)
	names := edgesOnePerPartition(parts) // names[k] lands on partition k
	edgeEnvs := make([]map[string]string, parts)
	edges := make([]*proc, parts)
	pubs := make([]*zmqtest.Publisher, parts)
	for k, name := range names {
		_, bindEP := publishers(t)
		edgeEnvs[k] = map[string]string{
			"AGG_BIND": bindEP, "AGG_NATS_URL": ns.url(), "AGG_NATS_EDGE": name, "AGG_NATS_PARTITIONS": "3",
			"AGG_MAX_SIZE_MB": "1", "AGG_MAX_BACKUPS": "0", "AGG_LOG_FILE": t.TempDir() + "/subscriber.log", "AGG_HTTP_ADDR": freeAddr(t),
		}
		edges[k] = startAgg(t, edgeEnvs[k])
		pubs[k] = connectTo(t, bindEP)
		subscribed(t, pubs[k])
	}
	pubs[0].Send([]byte("first"))
	edges[0].waitMetric("aggregator_forward_lines_total", 1) // the stream exists
	centralEnvs := make([]map[string]string, parts)
	centrals := make([]*proc, parts)
	for k := range parts {
		centralEnvs[k] = map[string]string{
			"AGG_NATS_URL": ns.url(), "AGG_NATS_CONSUME": "AGGREGATOR", "AGG_NATS_PARTITIONS": "3", "AGG_NATS_PARTITION": strconv.Itoa(k),
			"AGG_MAX_SIZE_MB": "1", "AGG_MAX_BACKUPS": "0", "AGG_LOG_FILE": t.TempDir() + "/central.log", "AGG_HTTP_ADDR": freeAddr(t),
		}
		centrals[k] = startAggNotReady(t, centralEnvs[k])
	}

	var sent []<-chan struct{}
	for _, pub := range pubs {
		sent = append(sent, sendPaced(pub, "line", 20_000, 100*time.Millisecond))
	}
	for i := range 2 {
		time.Sleep(time.Duration(1500+700*i) * time.Millisecond)
		centrals[1].kill()
		centrals[1] = startAggNotReady(t, centralEnvs[1])
	}
	for _, s := range sent {
		<-s
	}
	for k := range parts {
		eventually.Within(t, 30*time.Second, "central "+strconv.Itoa(k)+" holds every line of "+names[k], func() bool {
			n := lineCount(edgeEnvs[k]["AGG_LOG_FILE"])
			return edges[k].metric("aggregator_forward_lag_bytes") == 0 && n > 0 && lineCount(centralEnvs[k]["AGG_LOG_FILE"]) >= n
		})
	}
	time.Sleep(500 * time.Millisecond) // anything more would be a duplicate
	for k := range parts {
		sameLines(t, logBytes(t, centralEnvs[k]["AGG_LOG_FILE"]), annotated(t, edgeEnvs[k]["AGG_LOG_FILE"], names[k]))
	}
	t.Logf("edges %v, one per partition: each central holds its edge's %d lines once, through 2 kills of central 1", names, lineCount(edgeEnvs[0]["AGG_LOG_FILE"]))
}

// TestStandbyCentral: two centrals on one durable consumer. One takes
// the chunks, the other stands by and writes nothing; when the first is
// killed, the second takes over within seconds and resumes after what
// the first acknowledged. Together their files hold every line, in
// order; at most the window the killed one had written and not yet
// acknowledged is in both.
func TestStandbyCentral(t *testing.T) {
	skipShort(t)
	ns := startNATS(t)
	_, bindEP := publishers(t)
	edgeEnv := map[string]string{
		"AGG_BIND": bindEP, "AGG_NATS_URL": ns.url(), "AGG_NATS_EDGE": "edge1",
		"AGG_LOG_FILE": t.TempDir() + "/subscriber.log", "AGG_HTTP_ADDR": freeAddr(t),
	}
	edge := startAgg(t, edgeEnv)
	pub := connectTo(t, bindEP)
	subscribed(t, pub)
	pub.Send([]byte("first"))
	edge.waitMetric("aggregator_forward_lines_total", 1) // the stream exists
	centralEnv := func() map[string]string {
		return map[string]string{
			"AGG_NATS_URL": ns.url(), "AGG_NATS_CONSUME": "AGGREGATOR",
			"AGG_LOG_FILE": t.TempDir() + "/central.log", "AGG_HTTP_ADDR": freeAddr(t),
		}
	}
	envA, envB := centralEnv(), centralEnv()
	a := startAggNotReady(t, envA)
	a.waitMetric("aggregator_consume_active", 1)
	b := startAggNotReady(t, envB)

	sent := sendPaced(pub, "line", 30_000, 100*time.Millisecond)
	time.Sleep(2 * time.Second)
	if got := b.metric("aggregator_consume_active"); got != 0 {
		t.Fatalf("the standby says active %v while the first central takes the chunks", got)
	}
	if n := lineCount(envB["AGG_LOG_FILE"]); n > 0 {
		t.Fatalf("the standby wrote %d lines while the first central takes the chunks", n)
	}
	a.kill()
	killed := time.Now()
	eventually.Within(t, 15*time.Second, "the standby takes over", func() bool {
		return b.metric("aggregator_consume_active") == 1
	})
	t.Logf("the standby took over %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	<-sent
	eventually.Within(t, 30*time.Second, "the two centrals hold every line", func() bool {
		n := lineCount(edgeEnv["AGG_LOG_FILE"])
		return edge.metric("aggregator_forward_lag_bytes") == 0 && n > 0 &&
			lineCount(envA["AGG_LOG_FILE"])+lineCount(envB["AGG_LOG_FILE"]) >= n
	})
	time.Sleep(500 * time.Millisecond)

	want := annotated(t, edgeEnv["AGG_LOG_FILE"], "edge1")
	first, second := logBytes(t, envA["AGG_LOG_FILE"]), logBytes(t, envB["AGG_LOG_FILE"])
	overlap := len(first) + len(second) - len(want)
	if overlap < 0 || overlap > len(second) || !bytes.HasSuffix(first, second[:overlap]) {
		t.Fatalf("the centrals hold %d and %d bytes of the edge's %d, not its lines once with an overlap at the takeover",
			len(first), len(second), len(want))
	}
	sameLines(t, append(first, second[overlap:]...), want)
	t.Logf("%d lines: %d bytes by the first central, %d by the standby, %d bytes written by both at the takeover",
		bytes.Count(want, []byte{'\n'}), len(first), len(second), overlap)
}

// TestCentralFilePerEdge: a central with AGG_LOG_FILE=.../{edge}.log
// writes each edge's lines to a file of its own, exactly once, through
// SIGKILLs while three edges forward; a chunk published with a hostile
// edge name lands in a file inside the directory.
func TestCentralFilePerEdge(t *testing.T) {
	skipShort(t)
	ns := startNATS(t)
	names := []string{"edge-a", "edge-b", "edge-c"}
	edgeEnvs := make([]map[string]string, len(names))
	edges := make([]*proc, len(names))
	pubs := make([]*zmqtest.Publisher, len(names))
	for k, name := range names {
		_, bindEP := publishers(t)
		edgeEnvs[k] = map[string]string{
			"AGG_BIND": bindEP, "AGG_NATS_URL": ns.url(), "AGG_NATS_EDGE": name,
			"AGG_LOG_FILE": t.TempDir() + "/subscriber.log", "AGG_HTTP_ADDR": freeAddr(t),
		}
		edges[k] = startAgg(t, edgeEnvs[k])
		pubs[k] = connectTo(t, bindEP)
		subscribed(t, pubs[k])
	}
	pubs[0].Send([]byte("first"))
	edges[0].waitMetric("aggregator_forward_lines_total", 1) // the stream exists
	root := t.TempDir()
	dir := filepath.Join(root, "central")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	template := filepath.Join(dir, "{edge}.log")
	centralEnv := map[string]string{
		"AGG_NATS_URL": ns.url(), "AGG_NATS_CONSUME": "AGGREGATOR", "AGG_LOG_FILE": template,
		"AGG_MAX_SIZE_MB": "1", "AGG_MAX_BACKUPS": "0", "AGG_HTTP_ADDR": freeAddr(t),
	}
	central := startAggNotReady(t, centralEnv)

	var sent []<-chan struct{}
	for _, pub := range pubs {
		sent = append(sent, sendPaced(pub, "line", 20_000, 100*time.Millisecond))
	}
	rewinds := 0
	for i := range 3 {
		time.Sleep(time.Duration(900+400*i) * time.Millisecond)
		central.kill()
		central = startAggNotReady(t, centralEnv)
		rewinds += strings.Count(central.stderr.String(), "msg=\"cut what was written")
	}
	for _, s := range sent {
		<-s
	}
	fileOfEdge := func(edge string) string {
		tpl, err := route.Parse(template)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, string(tpl.AppendName(nil, &queue.Record{Edge: edge})))
	}
	for k, name := range names {
		eventually.Within(t, 30*time.Second, "the central's file of "+name+" holds every line", func() bool {
			n := lineCount(edgeEnvs[k]["AGG_LOG_FILE"])
			return edges[k].metric("aggregator_forward_lag_bytes") == 0 && n > 0 && lineCount(fileOfEdge(name)) >= n
		})
	}
	time.Sleep(500 * time.Millisecond) // anything more would be a duplicate

	// A kill in the middle of a batch, made to order: the state names the
	// file the batch went to and its size before; the file holds more.
	central.kill()
	stateFile := filepath.Join(dir, ".central.consumed")
	var st map[string]any
	if _, err := statefile.Load(stateFile, &st); err != nil {
		t.Fatal(err)
	}
	torn := fileOfEdge(names[0])
	info, err := os.Stat(torn)
	if err != nil {
		t.Fatal(err)
	}
	st["pending"] = []queue.FileAt{{Path: torn, Inode: sink.Inode(info), Size: info.Size()}}
	if err := statefile.Save(stateFile, st); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(torn, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("2026-12-03T00:00:00Z edge-a a batch cut by the crash\n2026-12-03T00:00:00Z edge-a and its torn")
	f.Close()
	central = startAggNotReady(t, centralEnv)
	if !strings.Contains(central.stderr.String(), "msg=\"cut what was written") {
		t.Errorf("the restarted central did not cut the torn batch:\n%s", central.stderr.String())
	}
	for k, name := range names {
		sameLines(t, logBytes(t, fileOfEdge(name)), annotated(t, edgeEnvs[k]["AGG_LOG_FILE"], name))
	}

	// A chunk from a client that names a hostile edge itself.
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := nats.NewMsg("aggregator.lines.x")
	msg.Header.Set("Aggregator-Edge", "../../escape")
	msg.Data = []byte("2026-12-03T00:00:00Z hostile\n")
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	hostile := fileOfEdge("../../escape")
	if filepath.Dir(hostile) != dir {
		t.Fatalf("the hostile edge's file %s is outside %s", hostile, dir)
	}
	eventually.Within(t, 10*time.Second, "the hostile edge's line in its own file", func() bool {
		data, err := os.ReadFile(hostile)
		return err == nil && bytes.Contains(data, []byte("hostile"))
	})
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("%d entries beside the central's directory, want only it", len(entries))
	}
	t.Logf("3 edges' %d lines each in a file per edge, once, through 3 kills of the central (%d files cut back at a restart); the hostile edge in %s",
		lineCount(edgeEnvs[0]["AGG_LOG_FILE"]), rewinds, filepath.Base(hostile))
}

// TestForwardFilePerTopic: an edge writing a file per topic forwards every
// file; the edge is killed with SIGKILL once while the lines come. The
// central, writing {edge}.{source}.log, mirrors the edge's files: each
// topic's lines once and in the order of its file, the busy topic's
// through its rotations.
func TestForwardFilePerTopic(t *testing.T) {
	skipShort(t)
	ns := startNATS(t)
	dir := t.TempDir()
	template := filepath.Join(dir, "{topic}.log")
	_, bindEP := publishers(t)
	edgeEnv := map[string]string{
		"AGG_BIND": bindEP, "AGG_NATS_URL": ns.url(), "AGG_NATS_EDGE": "edge1", "AGG_LOG_FILE": template,
		"AGG_MAX_SIZE_MB": "1", "AGG_MAX_BACKUPS": "0", "AGG_HTTP_ADDR": freeAddr(t),
	}
	centralTemplate := filepath.Join(t.TempDir(), "{edge}.{source}.log")
	centralEnv := map[string]string{
		"AGG_NATS_URL": ns.url(), "AGG_NATS_CONSUME": "AGGREGATOR",
		"AGG_LOG_FILE": centralTemplate, "AGG_HTTP_ADDR": freeAddr(t),
	}
	centralFile := func(topic string) string {
		tpl, err := route.Parse(centralTemplate)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(tpl.Dir(), string(tpl.AppendName(nil, &queue.Record{Edge: "edge1", Source: topic})))
	}
	edge := startAgg(t, edgeEnv)
	pub := connectTo(t, bindEP)
	subscribed(t, pub)

	const topics, each, busy = 50, 400, 25_000
	pad := strings.Repeat("p", 80)
	sent := 0
	send := func(topic string, i int) {
		t.Helper()
		if err := pub.Send([]byte(topic), []byte(fmt.Sprintf("%s %d %s", topic, i, pad))); err != nil {
			t.Fatal(err)
		}
		if sent++; sent%500 == 0 {
			time.Sleep(20 * time.Millisecond) // about 25k lines/s: the receive buffer never overflows
		}
	}
	send("t00", 0)
	edge.waitMetric("aggregator_forward_lines_total", 1) // the stream exists
	central := startAggNotReady(t, centralEnv)
	before := 0 // lines the killed edge wrote
	for i := range busy {
		send("busy", i)
		if i < each {
			for k := range topics {
				send(fmt.Sprintf("t%02d", k), i+1)
			}
		}
		if i == busy/2 {
			edge.waitMetric("aggregator_lines_written_total", float64(sent))
			before = sent
			edge.kill()
			edge = startAgg(t, edgeEnv)
			subscribed(t, pub)
		}
	}
	edge.waitMetric("aggregator_lines_written_total", float64(sent-before))
	total := func() int {
		n := 0
		for _, topic := range append([]string{"busy"}, topicNames(topics)...) {
			n += lineCount(fileOf(t, template, topic))
		}
		return n
	}
	eventually.Within(t, 60*time.Second, "the central holds every line of every file", func() bool {
		n := 0
		for _, topic := range append([]string{"busy"}, topicNames(topics)...) {
			n += lineCount(centralFile(topic))
		}
		return edge.metric("aggregator_forward_lag_bytes") == 0 && n >= total()
	})
	time.Sleep(500 * time.Millisecond) // anything more would be a duplicate
	central.stop()
	rotated := 0
	for _, topic := range append([]string{"busy"}, topicNames(topics)...) {
		path := fileOf(t, template, topic)
		files, _ := sink.Files(path)
		rotated += len(files) - 1
		sameLines(t, logBytes(t, centralFile(topic)), annotated(t, path, "edge1"))
	}
	if rotated == 0 {
		t.Error("no file rotated: the busy topic should have")
	}
	t.Logf("%d lines of %d files (%d backups), through a SIGKILL of the edge: each file's lines once, in order, on the central",
		total(), topics+1, rotated)
}

func topicNames(n int) []string {
	names := make([]string, n)
	for k := range names {
		names[k] = fmt.Sprintf("t%02d", k)
	}
	return names
}
