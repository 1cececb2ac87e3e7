package main

import (
	"bytes"
	"hash/fnv"
	"strconv"
	"testing"
	"time"

	"aggregator/internal/eventually"
	"aggregator/internal/sink"
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
