package ingest

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A socket's state driven by event sequences and a clock of the test's
// own, without libzmq: the orderings libzmq's threads can report, and
// what the connection gauge, the restarts and the attribution make of
// them. The real-socket tests (subscriber_integration_test.go) show that
// libzmq produces these sequences.

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

const (
	epA = "tcp://10.0.0.1:5555"
	epB = "tcp://10.0.0.2:5555"
)

func newState(bind bool, names ...string) *socketState {
	log := slog.New(slog.DiscardHandler)
	eps := make([]*endpoint, len(names))
	for i, n := range names {
		eps[i] = &endpoint{name: n, stats: &endpointStats{}, log: log}
	}
	src := newSources(eps, func() *endpoint {
		return &endpoint{name: Unattributed, stats: &endpointStats{}, log: log}
	})
	src.refresh = func() {}
	return &socketState{bind: bind, reconnectMax: time.Second, src: src}
}

func (st *socketState) ep(name string) *endpoint {
	for _, ep := range st.src.eps {
		if ep.name == name {
			return ep
		}
	}
	return nil
}

// step is one thing that happens to a socket at an offset from t0.
type step struct {
	at   time.Duration
	ev   int    // a monitor event of this kind (with addr and fd), or
	addr string // for an event
	fd   int32
	read bool // a read that found the socket empty, or
	look bool // the loop asking revive to look
}

func connected(at time.Duration, addr string, fd int32) step {
	return step{at: at, ev: evConnected, addr: addr, fd: fd}
}
func disconnected(at time.Duration, addr string, fd int32) step {
	return step{at: at, ev: evDisconnected, addr: addr, fd: fd}
}
func accepted(at time.Duration, addr string) step {
	return step{at: at, ev: evAccepted, addr: addr, fd: -1}
}
func readEmpty(at time.Duration) step { return step{at: at, read: true, ev: -1} }
func look(at time.Duration) step      { return step{at: at, look: true, ev: -1} }

// socketCalls records what revive asked of the socket.
type socketCalls struct {
	log     []string
	failFor map[string]bool // connect fails for these endpoints
}

func (c *socketCalls) disconnect(ep string) error {
	c.log = append(c.log, "disconnect "+ep)
	return nil
}

func (c *socketCalls) connect(ep string) error {
	c.log = append(c.log, "connect "+ep)
	if c.failFor[ep] {
		return errors.New("refused")
	}
	return nil
}

// run plays steps on st and returns what revive asked of the socket, what
// the last look said (when next, and whether to read first).
func (st *socketState) run(steps []step, calls *socketCalls) (due time.Time, read bool) {
	for _, s := range steps {
		now := t0.Add(s.at)
		switch {
		case s.read:
			st.src.emptied(st.src.closingMark())
		case s.look:
			due, read = st.revive(now, calls.disconnect, calls.connect)
		default:
			st.onEvent(now, monitorEvent{kind: s.ev, addr: s.addr, fd: s.fd})
		}
	}
	return due, read
}

func TestSocketStateConnections(t *testing.T) {
	for _, tt := range []struct {
		name  string
		bind  bool
		steps []step
		conns int64 // the endpoint's connection gauge after
		down  bool  // whether it is down, for revive
	}{
		{"connected", false, []step{connected(0, epA, 40)}, 1, false},
		// An endpoint the daemon connects to has one connection or none,
		// however many events of a kind libzmq reports in a row.
		{"connected reported twice", false, []step{connected(0, epA, 40), connected(time.Millisecond, epA, 40)}, 1, false},
		{"disconnected twice", false, []step{
			connected(0, epA, 40), disconnected(time.Second, epA, 40), disconnected(time.Second, epA, 40),
		}, 0, true},
		{"disconnected without a connection (a handshake that failed)", false, []step{disconnected(0, epA, 40)}, 0, true},
		{"down and back", false, []step{connected(0, epA, 40), disconnected(time.Second, epA, 40), connected(2*time.Second, epA, 41)}, 1, false},
		{"bind: three publishers, two leave", true, []step{
			accepted(0, epA), accepted(0, epA), accepted(0, epA), disconnected(time.Second, epA, 7), disconnected(time.Second, epA, 8),
		}, 1, false},
		{"bind: more disconnections than connections (failed handshakes)", true, []step{
			accepted(0, epA), disconnected(time.Second, epA, 7), disconnected(time.Second, epA, 8),
		}, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := newState(tt.bind, epA)
			st.run(tt.steps, &socketCalls{})
			ep := st.ep(epA)
			if got := ep.stats.connections.Load(); got != tt.conns || int64(ep.conns) != tt.conns {
				t.Errorf("connections: gauge %d, state %d, want %d", got, ep.conns, tt.conns)
			}
			if got := !ep.downAt.IsZero(); got != tt.down {
				t.Errorf("down: %v, want %v", got, tt.down)
			}
		})
	}
}

// Restarts: what revive asks of the socket, and when, for an endpoint
// libzmq does not connect to again by itself. With a reconnect cap of 1s
// an endpoint may stay down 3s; each restart in a row doubles that.
func TestSocketStateRevive(t *testing.T) {
	sec := time.Second
	for _, tt := range []struct {
		name     string
		names    []string
		steps    []step
		failFor  map[string]bool
		calls    string // what revive asked of the socket, in order
		due      time.Duration
		read     bool
		restarts int // of A
	}{
		{"not yet: libzmq may still reconnect", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), readEmpty(sec), look(2 * sec),
		}, nil, "", 4 * sec, false, 0},
		{"back before its time: nothing to do", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), connected(2*sec, epA, 41), look(5 * sec),
		}, nil, "", 0, false, 0},
		// zmq_disconnect would drop what the queue still holds.
		{"ripe, but the socket was not read empty since", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), look(4 * sec),
		}, nil, "", 4*sec + 100*time.Millisecond, true, 0},
		// libzmq queues a protocol error's last messages a moment after
		// it reports the disconnection: one more read to empty first.
		{"ripe and read empty: one more read first", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), readEmpty(sec), look(4 * sec),
		}, nil, "", 4*sec + 10*time.Millisecond, true, 0},
		{"ripe, read empty twice: restarted", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), readEmpty(sec), look(4 * sec), readEmpty(4 * sec), look(4*sec + 10*time.Millisecond),
		}, nil, "disconnect " + epA + ", connect " + epA, 0, false, 1},
		// Every endpoint down goes out before any comes back; B, not ripe,
		// only loses libzmq's back-off and is no restart of its own.
		{"two down, one ripe: both out, then both in", []string{epA, epB}, []step{
			connected(0, epA, 40), connected(0, epB, 41), disconnected(sec, epA, 40), disconnected(3*sec, epB, 41),
			readEmpty(3 * sec), look(4 * sec), readEmpty(4 * sec), look(4*sec + 10*time.Millisecond),
		}, nil, "disconnect " + epA + ", disconnect " + epB + ", connect " + epA + ", connect " + epB, 0, false, 1},
		{"a connect that fails is tried again later", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), readEmpty(sec), look(4 * sec), readEmpty(4 * sec), look(5 * sec),
		}, map[string]bool{epA: true}, "disconnect " + epA + ", connect " + epA, 8 * sec, false, 0},
		{"restarted once, down again: twice as long", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), readEmpty(sec), look(4 * sec), readEmpty(4 * sec), look(5 * sec),
			connected(6*sec, epA, 42), disconnected(7*sec, epA, 42), readEmpty(7 * sec), look(11 * sec),
		}, nil, "disconnect " + epA + ", connect " + epA, 13 * sec, false, 1},
		{"a connection that lasted a minute starts the back-off over", []string{epA}, []step{
			connected(0, epA, 40), disconnected(sec, epA, 40), readEmpty(sec), look(4 * sec), readEmpty(4 * sec), look(5 * sec),
			connected(6*sec, epA, 42), disconnected(70*sec, epA, 42), readEmpty(70 * sec), look(72 * sec),
		}, nil, "disconnect " + epA + ", connect " + epA, 73 * sec, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := newState(false, tt.names...)
			calls := &socketCalls{failFor: tt.failFor}
			due, read := st.run(tt.steps, calls)
			if got := strings.Join(calls.log, ", "); got != tt.calls {
				t.Errorf("asked the socket: %q, want %q", got, tt.calls)
			}
			var wantDue time.Time
			if tt.due != 0 {
				wantDue = t0.Add(tt.due)
			}
			if !due.Equal(wantDue) || read != tt.read {
				t.Errorf("next look %v (read first: %v), want %v (%v)", due.Sub(t0), read, tt.due, tt.read)
			}
			if got := st.ep(epA).restarts; got != tt.restarts {
				t.Errorf("A restarted %d times in a row, want %d", got, tt.restarts)
			}
		})
	}
}

// A bind endpoint is never restarted: its publishers connect again.
func TestSocketStateBindIsNotRevived(t *testing.T) {
	st := newState(true, epA)
	calls := &socketCalls{}
	st.run([]step{accepted(0, epA), disconnected(time.Second, epA, 7), readEmpty(time.Second), look(time.Hour)}, calls)
	if st.anyDown() || len(calls.log) > 0 {
		t.Errorf("a bind endpoint was revived: down %v, calls %v", st.anyDown(), calls.log)
	}
}

// Events and messages of a shared socket go to the endpoint the monitor
// said, by descriptor, and what cannot be told apart to Unattributed,
// whose events do not move any endpoint's gauge.
func TestSocketStateAttribution(t *testing.T) {
	st := newState(false, epA, epB)
	st.run([]step{connected(0, epA, 40), connected(0, epB, 41), disconnected(time.Second, epA, 40), connected(time.Second, epB, 40)}, &socketCalls{})
	if got := st.src.of(41).name; got != epB {
		t.Errorf("a message on B's first descriptor counted for %s", got)
	}
	if got := st.src.of(40).name; got != Unattributed {
		t.Errorf("a message on A's old descriptor, now B's, before a read to empty: counted for %s", got)
	}
	st.src.emptied(st.src.closingMark())
	if got := st.src.of(40).name; got != epB {
		t.Errorf("after a read to empty, a message on 40 counted for %s", got)
	}
	st.onEvent(t0, monitorEvent{kind: evConnected, addr: "tcp://10.9.9.9:1", fd: 50})
	if a, b := st.ep(epA).conns, st.ep(epB).conns; a != 0 || b != 1 {
		t.Errorf("an event of an unknown address moved the gauges: A %d, B %d", a, b)
	}
	if got := st.src.unattributed.stats.events[evConnected].Load(); got != 1 {
		t.Errorf("unattributed connected events: %d", got)
	}
}

// An endpoint restarted again and again waits twice as long each time, up
// to restartBackoffMax.
func TestSocketStateBackoff(t *testing.T) {
	st := newState(false, epA)
	ep := st.ep(epA)
	for restarts, want := range []time.Duration{3 * time.Second, 6 * time.Second, 12 * time.Second} {
		ep.restarts = restarts
		if got := st.reviveAfter(ep); got != want {
			t.Errorf("after %d restarts: %s, want %s", restarts, got, want)
		}
	}
	ep.restarts = 1000
	if got := st.reviveAfter(ep); got != restartBackoffMax {
		t.Errorf("after 1000 restarts: %s, want %s", got, restartBackoffMax)
	}
}
