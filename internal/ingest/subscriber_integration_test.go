package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"aggregator/internal/eventually"
	"aggregator/internal/queue"
	"aggregator/internal/zmqtest"
)

// rig runs subscribers against real sockets on loopback and collects what
// reaches the queue, as the sink would.
type rig struct {
	t         *testing.T
	zctx      *zmq.Context
	q         *queue.Queue
	m         *Metrics
	reg       *prometheus.Registry
	subs      []*Subscriber
	cancel    context.CancelFunc
	done      chan error
	collected chan struct{}

	mu   sync.Mutex
	recs []queue.Record
	eps  []string
	// hold, when set before start, keeps the sink from taking batches
	// until it is closed.
	hold chan struct{}
}

func newRig(t *testing.T) *rig {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	q := queue.NewQueue(4)
	reg := prometheus.NewRegistry()
	r := &rig{t: t, zctx: zctx, q: q, m: NewMetrics(reg, q), reg: reg}
	t.Cleanup(r.stop)
	return r
}

func (r *rig) add(opt Options) *Subscriber {
	r.t.Helper()
	if opt.MaxMessageBytes == 0 {
		opt.MaxMessageBytes = 64 << 10
	}
	if opt.RcvHWM == 0 {
		opt.RcvHWM = 1000
	}
	log := slog.New(slog.NewTextHandler(testWriter{r.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := NewSubscriber(r.zctx, opt, r.q, r.m, log)
	if err != nil {
		r.t.Fatalf("NewSubscriber(%s): %v", opt.Endpoints, err)
	}
	r.subs = append(r.subs, s)
	return s
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() {
		err := RunAll(ctx, r.subs, r.q)
		close(r.q.C)
		r.done <- err
	}()
	r.collected = make(chan struct{})
	go func() {
		defer close(r.collected)
		if r.hold != nil {
			<-r.hold
		}
		for b := range r.q.C {
			r.q.Taken(b)
			r.mu.Lock()
			for _, rec := range b.Records {
				// Keep copies: the batch's buffers are reused.
				var frames [][]byte
				for _, f := range rec.Frames {
					frames = append(frames, bytes.Clone(f))
				}
				rec.Frames = frames
				r.recs = append(r.recs, rec)
				r.eps = append(r.eps, rec.Endpoint)
			}
			r.mu.Unlock()
			r.q.Recycle(b)
		}
	}()
}

func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.t.Errorf("RunAll: %v", err)
			}
		case <-time.After(10 * time.Second):
			r.t.Error("subscribers did not stop")
		}
		<-r.collected
		r.cancel = nil
	}
	if r.zctx != nil {
		for _, s := range r.subs {
			s.Close()
		}
		r.zctx.Term()
		r.zctx = nil
	}
}

// metric reads one series from the rig's registry, as a scrape would see
// it: the endpoint label, then the event label for connection events.
func (r *rig) metric(name string, labels ...string) float64 {
	r.t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i, lp := range m.GetLabel() {
				if i >= len(labels) || lp.GetValue() != labels[i] {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// waitCount waits until n records have arrived.
func (r *rig) waitCount(n int) []queue.Record {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.recs)
		out := append([]queue.Record(nil), r.recs...)
		r.mu.Unlock()
		if got >= n {
			return out
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("received %d of %d messages", got, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func mustPub(t *testing.T, p *zmqtest.Publisher, err error) *zmqtest.Publisher {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func send(t *testing.T, p *zmqtest.Publisher, frames ...string) {
	t.Helper()
	var bs [][]byte
	for _, f := range frames {
		bs = append(bs, []byte(f))
	}
	if err := p.Send(bs...); err != nil {
		t.Fatal(err)
	}
}

func TestConnectAndBindAtOnce(t *testing.T) {
	r := newRig(t)
	// Two publishers that bind, two that connect to our bind endpoints.
	var pubs []*zmqtest.Publisher
	for range 2 {
		p, err := zmqtest.Bind()
		p = mustPub(t, p, err)
		r.add(Options{Endpoints: []string{p.Endpoint}})
		pubs = append(pubs, p)
	}
	for range 2 {
		ep, err := zmqtest.FreeTCPEndpoint()
		if err != nil {
			t.Fatal(err)
		}
		r.add(Options{Endpoints: []string{ep}, Bind: true})
		p, err := zmqtest.Connect(ep)
		pubs = append(pubs, mustPub(t, p, err))
	}
	r.start()
	const each = 2000
	for i, p := range pubs {
		if err := p.WaitSubscribed(1, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		for seq := range each {
			send(t, p, fmt.Sprintf("pub%d %d", i, seq))
		}
	}
	recs := r.waitCount(4 * each)
	seen := map[string]int{}
	for _, rec := range recs {
		seen[string(rec.Frames[0])]++
	}
	for i := range pubs {
		for seq := range each {
			if k := fmt.Sprintf("pub%d %d", i, seq); seen[k] != 1 {
				t.Fatalf("%q received %d times", k, seen[k])
			}
		}
	}
	for _, s := range r.subs {
		if got := r.metric("aggregator_messages_received_total", s.Endpoint()); got != each {
			t.Errorf("received metric for %s = %v, want %d", s.Endpoint(), got, each)
		}
	}
	if ev := r.metric("aggregator_connection_events_total", r.subs[0].Endpoint(), "connected"); ev < 1 {
		t.Errorf("no connected event counted for %s", r.subs[0].Endpoint())
	}
	if ev := r.metric("aggregator_connection_events_total", r.subs[2].Endpoint(), "accepted"); ev < 1 {
		t.Errorf("no accepted event counted for %s", r.subs[2].Endpoint())
	}
}

func TestIPCEndpoints(t *testing.T) {
	r := newRig(t)
	ep := "ipc://" + t.TempDir() + "/aggregator.sock"
	r.add(Options{Endpoints: []string{ep}, Bind: true})
	r.start()
	p, err := zmqtest.Connect(ep)
	p = mustPub(t, p, err)
	if err := p.WaitSubscribed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	send(t, p, "over a unix socket")
	if recs := r.waitCount(1); string(recs[0].Frames[0]) != "over a unix socket" {
		t.Fatalf("got %q", recs[0].Frames)
	}
}

func TestTopicFilter(t *testing.T) {
	r := newRig(t)
	p, err := zmqtest.Bind()
	p = mustPub(t, p, err)
	r.add(Options{Endpoints: []string{p.Endpoint}, Topics: []string{"app.", "db."}})
	r.start()
	if err := p.WaitSubscribed(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"app.start", "web.hit", "db.slow", "ap.nope", "app.stop"} {
		send(t, p, m)
	}
	r.waitCount(3)
	time.Sleep(50 * time.Millisecond) // anything filtered wrongly would arrive now
	recs := r.waitCount(3)
	var got []string
	for _, rec := range recs {
		got = append(got, string(rec.Frames[0]))
	}
	if strings.Join(got, ",") != "app.start,db.slow,app.stop" {
		t.Fatalf("received %v", got)
	}
}

func TestPayloads(t *testing.T) {
	r := newRig(t)
	p, err := zmqtest.Bind()
	p = mustPub(t, p, err)
	r.add(Options{Endpoints: []string{p.Endpoint}, MaxMessageBytes: 1000, WantPeer: true})
	r.start()
	if err := p.WaitSubscribed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 5000)
	cases := [][]string{
		{"plain"},
		{""},
		{"line one\nline two\r\n"},
		{"\x00\xff\xfe binary"},
		{"topic", "part 1", "part 2"},
		{big},
		{"t", big, "dropped frame"},
	}
	for _, c := range cases {
		send(t, p, c...)
	}
	recs := r.waitCount(len(cases))
	for i, c := range cases[:5] {
		if got := recs[i].Frames; len(got) != len(c) || !bytes.Equal(bytes.Join(got, []byte("|")), []byte(strings.Join(c, "|"))) {
			t.Errorf("case %d: frames %q, want %q", i, got, c)
		}
		if recs[i].Truncated {
			t.Errorf("case %d marked truncated", i)
		}
		if recs[i].Peer != "127.0.0.1" {
			t.Errorf("case %d: peer %q", i, recs[i].Peer)
		}
	}
	if rec := recs[5]; !rec.Truncated || size(rec) != 1000 {
		t.Errorf("oversize message: truncated=%v size=%d", rec.Truncated, size(rec))
	}
	if rec := recs[6]; !rec.Truncated || size(rec) != 1000 || len(rec.Frames) != 2 {
		t.Errorf("oversize multipart: truncated=%v size=%d frames=%d", rec.Truncated, size(rec), len(rec.Frames))
	}
	if got := r.metric("aggregator_messages_truncated_total", p.Endpoint); got != 2 {
		t.Errorf("truncated metric %v, want 2", got)
	}
	if recs[0].Time <= 0 || recs[0].Time > time.Now().UnixNano() {
		t.Errorf("bad receive time %d", recs[0].Time)
	}
}

// TestStripNewline: one "\n" or "\r\n" ending the last frame ends the
// record; a message of exactly the maximum plus its newline is whole.
func TestStripNewline(t *testing.T) {
	r := newRig(t)
	p, err := zmqtest.Bind()
	p = mustPub(t, p, err)
	r.add(Options{Endpoints: []string{p.Endpoint}, MaxMessageBytes: 10, StripNewline: true})
	r.start()
	if err := p.WaitSubscribed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		send      []string
		want      string
		truncated bool
	}{
		{[]string{"0123456789\n"}, "0123456789", false},
		{[]string{"0123456789\r\n"}, "0123456789", false},
		{[]string{"two\n\n"}, "two\n", false},
		{[]string{"\n"}, "", false},
		{[]string{"t.INFO", "ok\n"}, "t.INFO|ok", false},
		{[]string{"line\n", "last"}, "line\n|last", false}, // only the last frame's
		{[]string{"0123456789x\n"}, "0123456789", true},
	}
	for _, c := range cases {
		send(t, p, c.send...)
	}
	recs := r.waitCount(len(cases))
	for i, c := range cases {
		if got := string(bytes.Join(recs[i].Frames, []byte("|"))); got != c.want || recs[i].Truncated != c.truncated {
			t.Errorf("%q: got %q truncated=%v, want %q truncated=%v", c.send, got, recs[i].Truncated, c.want, c.truncated)
		}
	}
}

func TestPublisherLateAndRestarting(t *testing.T) {
	r := newRig(t)
	ep, err := zmqtest.FreeTCPEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	r.add(Options{Endpoints: []string{ep}}) // nobody is there yet
	r.start()
	time.Sleep(150 * time.Millisecond) // at least one failed connect attempt

	for round := range 3 {
		p, err := bindRetry(ep)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := p.WaitSubscribed(1, 10*time.Second); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for seq := range 100 {
			send(t, p, fmt.Sprintf("round %d seq %d", round, seq))
		}
		r.waitCount(100 * (round + 1))
		p.Close() // the publisher goes away; the next round brings it back
	}
	if ev := r.metric("aggregator_connection_events_total", ep, "disconnected"); ev < 2 {
		t.Errorf("disconnected events %v, want at least 2", ev)
	}
}

// TestStopDeliversWhatWasReceived: what libzmq already holds when the
// daemon stops is taken and handed on, not left behind. The sink is held
// so that the receive loop stalls on a full queue and the messages pile up
// in the socket's queue; then the stop comes, the sink goes on, and every
// message must arrive. Without the drain at stop, only the queue's worth
// arrived (the test fails).
func TestStopDeliversWhatWasReceived(t *testing.T) {
	r := newRig(t)
	r.hold = make(chan struct{})
	p, err := zmqtest.Bind()
	p = mustPub(t, p, err)
	r.add(Options{Endpoints: []string{p.Endpoint}, RcvHWM: 100000})
	// A witness subscribed to the same publisher: once it has every
	// message, the publisher has sent them all, and over loopback the
	// rig's socket has them too.
	witness, err := r.zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	witness.SetLinger(0)
	witness.SetRcvhwm(0)
	witness.SetSubscribe("")
	if err := witness.Connect(p.Endpoint); err != nil {
		t.Fatal(err)
	}
	r.start()
	if err := p.WaitSubscribed(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for seq := range n {
		send(t, p, fmt.Sprintf("m%d", seq))
	}
	witness.SetRcvtimeo(10 * time.Second)
	for i := range n {
		if _, err := witness.RecvBytes(0); err != nil {
			t.Fatalf("the witness got %d of %d: %v", i, n, err)
		}
	}
	witness.Close() // before the context is terminated
	if queued := r.q.Waiting(); queued >= n {
		t.Fatalf("%d records queued: the queue is not holding the loop back", queued)
	}
	r.cancel()
	close(r.hold)
	r.stop()
	r.mu.Lock()
	got := len(r.recs)
	r.mu.Unlock()
	if got != n {
		t.Fatalf("%d of %d messages delivered after the stop", got, n)
	}
	if m := r.metric("aggregator_messages_received_total", p.Endpoint); int(m) != n {
		t.Errorf("received metric %v, want %d", m, n)
	}
}

func TestBadEndpointFailsAtStart(t *testing.T) {
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	l, err := zmqtest.Bind() // holds a port
	l = mustPub(t, l, err)
	q := queue.NewQueue(1)
	m := NewMetrics(prometheus.NewRegistry(), q)
	_, err = NewSubscriber(zctx, Options{Endpoints: []string{l.Endpoint}, Bind: true, MaxMessageBytes: 10}, q, m, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "bind "+l.Endpoint) {
		t.Fatalf("binding a port in use: err = %v", err)
	}
}

// bindRetry binds ep, waiting for libzmq to release it from a publisher
// closed a moment ago (sockets close asynchronously).
func bindRetry(ep string) (*zmqtest.Publisher, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := zmqtest.BindAt(ep)
		if err == nil || time.Now().After(deadline) {
			return p, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRawSocket guards the one place that reaches inside pebbe/zmq4: the
// handle must be the one pebbe itself prints.
func TestRawSocket(t *testing.T) {
	s, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := fmt.Sprintf("Socket(SUB,%p)", rawSocket(s)); s.String() != want {
		t.Fatalf("raw handle %s, pebbe says %s", want, s.String())
	}
}

// One socket connected to publishers on TCP, on IPC and under a host name
// still says which endpoint each message came in on, in the records, the
// counters and the connection gauge.
func TestSharedSocketTellsEndpointsApart(t *testing.T) {
	r := newRig(t)
	tcp, err := zmqtest.Bind()
	tcp = mustPub(t, tcp, err)
	ipc, err := zmqtest.BindAt("ipc://" + t.TempDir() + "/pub.sock")
	ipc = mustPub(t, ipc, err)
	named, err := zmqtest.Bind()
	named = mustPub(t, named, err)
	namedEP := strings.Replace(named.Endpoint, "127.0.0.1", "localhost", 1)
	eps := []string{tcp.Endpoint, ipc.Endpoint, namedEP}
	r.add(Options{Endpoints: eps, MaxMessageBytes: 8})
	r.start()

	pubs := []*zmqtest.Publisher{tcp, ipc, named}
	const each = 500
	for _, p := range pubs {
		if err := p.WaitSubscribed(1, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Interleaved, so that a batch holds messages from all three.
	for seq := range each {
		for i, p := range pubs {
			msg := fmt.Sprintf("p%d %d", i, seq)
			if seq == 0 {
				msg += " is longer than eight bytes"
			}
			send(t, p, msg)
		}
	}
	recs := r.waitCount(3 * each)
	r.mu.Lock()
	for i, rec := range recs {
		var p int
		fmt.Sscanf(string(rec.Frames[0]), "p%d", &p)
		if rec.Endpoint != eps[p] || r.eps[i] != eps[p] {
			t.Fatalf("%q came in on %s, recorded as %s", rec.Frames[0], eps[p], rec.Endpoint)
		}
	}
	r.mu.Unlock()
	for _, ep := range eps {
		if got := r.metric("aggregator_messages_received_total", ep); got != each {
			t.Errorf("received for %s = %v, want %d", ep, got, each)
		}
		if got := r.metric("aggregator_messages_truncated_total", ep); got != 1 {
			t.Errorf("truncated for %s = %v, want 1", ep, got)
		}
		if got := r.metric("aggregator_endpoint_connections", ep); got != 1 {
			t.Errorf("connections for %s = %v, want 1", ep, got)
		}
		if got := r.metric("aggregator_connection_events_total", ep, "connected"); got != 1 {
			t.Errorf("connected events for %s = %v, want 1", ep, got)
		}
	}

	ipc.Close()
	eventually.Within(t, 5*time.Second, "the IPC publisher's connection gauge at 0", func() bool {
		return r.metric("aggregator_endpoint_connections", ipc.Endpoint) == 0
	})
	for _, ep := range []string{tcp.Endpoint, namedEP} {
		if got := r.metric("aggregator_endpoint_connections", ep); got != 1 {
			t.Errorf("connections for %s = %v, want 1", ep, got)
		}
	}
}

// libzmq names an endpoint given by host name by its resolved address
// once it has connected, so such an endpoint keeps a socket of its own,
// even where the others share: a publisher behind a host name that
// restarts is still its endpoint's, in records, counters and the gauge.
func TestHostNameAfterReconnect(t *testing.T) {
	r := newRig(t)
	other, err := zmqtest.Bind()
	other = mustPub(t, other, err)
	third, err := zmqtest.Bind()
	third = mustPub(t, third, err)
	ep, err := zmqtest.FreeTCPEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	named := strings.Replace(ep, "127.0.0.1", "localhost", 1)
	opts := []Options{{Endpoints: []string{other.Endpoint, named, third.Endpoint}}}
	for _, o := range Group(opts, 1) {
		r.add(o)
	}
	if len(r.subs) != 2 {
		t.Fatalf("%d sockets for two addresses and a host name, want 2", len(r.subs))
	}
	r.start()
	for round := range 3 {
		p, err := bindRetry(ep)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitSubscribed(1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		eventually.Within(t, 5*time.Second, "the connection gauge at 1", func() bool {
			return r.metric("aggregator_endpoint_connections", named) == 1
		})
		for i := range 10 {
			send(t, p, fmt.Sprintf("round %d %d", round, i))
		}
		for _, rec := range r.waitCount(10 * (round + 1))[10*round:] {
			if rec.Endpoint != named {
				t.Fatalf("round %d: %q recorded for %s, want %s", round, rec.Frames[0], rec.Endpoint, named)
			}
		}
		p.Close()
		eventually.Within(t, 5*time.Second, "the connection gauge at 0", func() bool {
			return r.metric("aggregator_endpoint_connections", named) == 0
		})
	}
	if got := r.metric("aggregator_messages_received_total", named); got != 30 {
		t.Errorf("received for %s = %v, want 30", named, got)
	}
	if got := r.metric("aggregator_connection_events_total", named, "connected"); got != 3 {
		t.Errorf("connected events for %s = %v, want 3", named, got)
	}
	if got := r.metric("aggregator_connection_events_total", other.Endpoint, "connected"); got != 1 {
		t.Errorf("connected events for %s = %v, want 1", other.Endpoint, got)
	}
}

// A publisher leaves messages unread behind (the loop is held up by the
// sink) and another endpoint of the same socket connects, likely on the
// same descriptor. Nothing is lost, and nothing is written as the other
// publisher's: what cannot be told apart is written as unattributed.
func TestSharedSocketDescriptorReused(t *testing.T) {
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	q := queue.NewQueue(1)
	reg := prometheus.NewRegistry()
	r := &rig{t: t, reg: reg}
	a, err := zmqtest.Bind()
	if err != nil {
		t.Fatal(err)
	}
	bEP, err := zmqtest.FreeTCPEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSubscriber(zctx, Options{Endpoints: []string{a.Endpoint, bEP}, MaxMessageBytes: 1000, RcvHWM: 1000}, q, NewMetrics(reg, q), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { RunAll(ctx, []*Subscriber{s}, q); close(done) }()
	if err := a.WaitSubscribed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Nobody takes from the queue: one batch fills it, the loop then
	// waits to hand on the next (Waiting counts it from the moment the
	// loop tries), and A's messages wait in libzmq.
	send(t, a, "A first")
	eventually.Within(t, 5*time.Second, "a batch in the queue", func() bool { return q.Waiting() == 1 })
	send(t, a, "A second")
	eventually.Within(t, 5*time.Second, "the loop waiting to hand on a second", func() bool { return q.Waiting() == 2 })
	for i := range 100 {
		send(t, a, fmt.Sprintf("A %d", i))
	}
	a.Close()
	// libzmq's I/O thread closes A's connection and frees its descriptor
	// with no event the held-up loop could read: nothing to wait on but
	// time. Whether B then gets that descriptor is checked below.
	time.Sleep(300 * time.Millisecond)
	b, err := bindRetry(bEP)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WaitSubscribed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	got := map[string]int{}
	collect := func(bt *queue.Batch) {
		for _, rec := range bt.Records {
			from := string(rec.Frames[0][:1])
			switch {
			case from == "A" && rec.Endpoint == bEP, from == "B" && rec.Endpoint == a.Endpoint:
				t.Errorf("%q written as %s's", rec.Frames[0], rec.Endpoint)
			case rec.Endpoint == Unattributed:
				got["unattributed"]++
			}
			got[from]++
		}
		q.Recycle(bt)
	}
	for got["A"] < 102 {
		select {
		case bt := <-q.C:
			collect(bt)
		case <-time.After(5 * time.Second):
			t.Fatalf("received %v of A's 102 messages", got["A"])
		}
	}
	for i := range 10 {
		send(t, b, fmt.Sprintf("B %d", i))
	}
	for got["B"] < 10 {
		select {
		case bt := <-q.C:
			collect(bt)
		case <-time.After(5 * time.Second):
			t.Fatalf("received %v of B's 10 messages", got["B"])
		}
	}
	cancel()
	go func() {
		for bt := range q.C {
			collect(bt)
		}
	}()
	<-done
	close(q.C)
	if want := 102 - r.metric("aggregator_messages_received_total", a.Endpoint); float64(got["unattributed"]) != want {
		t.Errorf("%d unattributed, but A was counted %v of 102", got["unattributed"], 102-want)
	}
	if got := r.metric("aggregator_messages_received_total", Unattributed); got != 102-r.metric("aggregator_messages_received_total", a.Endpoint) {
		t.Errorf("unattributed counted %v", got)
	}
	if got := r.metric("aggregator_messages_received_total", bEP); got != 10 {
		t.Errorf("received for %s = %v, want 10", bEP, got)
	}
	t.Logf("A's messages: %v counted for A, %d unattributed", r.metric("aggregator_messages_received_total", a.Endpoint), got["unattributed"])
	if s.st.src.reusedByOther.Load() == 0 {
		t.Skip("B's connection did not get A's descriptor this time: nothing was in doubt")
	}
	if got["unattributed"] == 0 {
		t.Error("B took A's descriptor while A's messages waited, yet none was written as unattributed")
	}
}

// libzmq never reconnects to a publisher that broke the protocol, here with
// a frame over the maximum message size; the daemon does, and what the
// publisher sent before and after its bad frame arrives.
func TestPublisherBackAfterOversizeFrame(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "own socket", true: "shared socket"}[shared], func(t *testing.T) {
			r := newRig(t)
			p, err := zmqtest.Bind()
			p = mustPub(t, p, err)
			eps := []string{p.Endpoint}
			if shared {
				other, err := zmqtest.Bind()
				other = mustPub(t, other, err)
				eps = append(eps, other.Endpoint)
			}
			r.add(Options{Endpoints: eps, MaxMessageBytes: 100, ReconnectMax: 100 * time.Millisecond})
			r.start()
			if err := p.WaitSubscribed(1, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			send(t, p, "before")
			r.waitCount(1)
			if err := p.Send(make([]byte, 2*minFrameLimit)); err != nil {
				t.Fatal(err)
			}
			eventually.Within(t, 5*time.Second, "a disconnection", func() bool {
				return r.metric("aggregator_connection_events_total", p.Endpoint, "disconnected") == 1
			})
			if err := p.WaitSubscribed(1, 10*time.Second); err != nil {
				t.Fatalf("not connected again: %v", err)
			}
			send(t, p, "after")
			recs := r.waitCount(2)
			if string(recs[0].Frames[0]) != "before" || string(recs[1].Frames[0]) != "after" {
				t.Errorf("received %q and %q", recs[0].Frames[0], recs[1].Frames[0])
			}
			if got := r.metric("aggregator_connection_events_total", p.Endpoint, "restarted"); got != 1 {
				t.Errorf("restarted events %v, want 1", got)
			}
			if got := r.metric("aggregator_endpoint_connections", p.Endpoint); got != 1 {
				t.Errorf("connections %v, want 1", got)
			}
		})
	}
}

// size is the number of payload bytes r carries.
func size(r queue.Record) int {
	n := 0
	for _, f := range r.Frames {
		n += len(f)
	}
	return n
}
