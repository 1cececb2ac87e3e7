package ingest

import (
	"log/slog"
	"time"
)

// socketState is everything one socket knows of its endpoints'
// connections, in one place: which endpoint each message and event belongs
// to (attribution, see sources), how many connections each endpoint has,
// which endpoints are down, and when the daemon connects to them again
// (libzmq gives up after a protocol error; see below). It holds no socket:
// the Subscriber feeds it libzmq's monitor events and the outcome of its
// reads, and it asks for the disconnects and connects it decides on
// through functions it is given. Every method takes the time, so a test
// drives it with a clock of its own and no libzmq (state_test.go). Owned
// by the receive loop that runs the socket.
//
// libzmq gives up on an endpoint it connects to after a protocol error: a
// publisher that sends a frame over the socket's maximum message size
// (frameLimitFactor times MaxMessageBytes), or a peer that does not speak
// ZMTP, is disconnected and never connected to again (session_base.cpp,
// engine_error). After an ordinary disconnection libzmq reconnects within
// its reconnect back-off. So an endpoint that stays down for longer than
// twice that back-off plus a second is connected to again by the daemon,
// with zmq_disconnect and zmq_connect: a long outage of a publisher costs
// one such restart, a publisher that sent one bad frame loses only what it
// sent while it was cut off. An endpoint restarted again and again (a
// service that is not a publisher) waits twice as long each time, up to
// restartBackoffMax.
//
// Two things libzmq does make the order matter:
//
//   - zmq_disconnect drops what the endpoint's queue still holds, so
//     nothing is restarted before the socket has been read empty after
//     every disconnection it has seen (sources.emptiedSeq);
//   - a session that ended itself stays in the socket's endpoint table
//     with a dangling pointer, and zmq_disconnect of that endpoint ends the
//     socket's child at that address, which a session made since may now
//     have. So on a socket, every endpoint that is down is disconnected
//     before any is connected again.
type socketState struct {
	bind         bool          // the socket binds its one endpoint; otherwise it connects to each
	reconnectMax time.Duration // libzmq's reconnect back-off cap (Options.ReconnectMax)
	src          *sources
	// The endpoints still down, and how many reads that find the socket
	// empty revive waits for before it restarts them (zero: none pending).
	down         []*endpoint
	restartAfter uint64
	// due is when an event summary noted in the middle of a receive (when
	// a message's descriptor sent attribution to the monitor) is due; zero:
	// none. The loop takes it after each receive.
	due time.Time
}

// restartBackoffMax caps the wait between restarts of an endpoint that
// never stays up.
const restartBackoffMax = 5 * time.Minute

// stayedUp is how long a connection must last for its endpoint's restart
// back-off to start over.
const stayedUp = time.Minute

// monitorEvent is one event of libzmq's socket monitor: its kind
// (evConnected and so on), the address it names and, for a connection or
// disconnection, the connection's descriptor.
type monitorEvent struct {
	kind int
	addr string
	fd   int32
}

// onEvent takes one monitor event read at now: it is counted for the
// endpoint it is about, moves that endpoint's connection gauge and its
// up or down state, and is logged at a bounded rate. It returns when
// something is next due: an event summary, or a look at an endpoint that
// went down (zero: nothing).
func (st *socketState) onEvent(now time.Time, ev monitorEvent) (due time.Time) {
	ep := st.src.ofEvent(ev.addr, ev.fd, ev.kind == evDisconnected)
	ep.stats.events[ev.kind].Add(1)
	// An endpoint the daemon connects to has one connection or none,
	// whatever order libzmq's threads report them in.
	single := !st.bind && ep != st.src.unattributed
	delta := 0
	switch ev.kind {
	case evConnected:
		st.src.connected(ev.fd, ep)
		ep.upAt, ep.downAt = now, time.Time{}
		delta = 1
		if single {
			delta = 1 - ep.conns
		}
	case evAccepted:
		delta = 1
	case evDisconnected: // also ends every accepted connection whose handshake failed
		st.src.disconnected(ev.fd)
		if ep.conns > 0 {
			delta = -1
		}
		if single {
			delta = -ep.conns
		}
	}
	ep.conns += delta
	ep.stats.connections.Add(int64(delta))
	ep.events.note(ep.log, now, ev.kind, eventLevel(ev.kind), ev.addr)
	due = ep.events.next()
	if ev.kind == evDisconnected {
		due = earliest(due, st.wentDown(ep, now))
	}
	return due
}

// wentDown notes that ep lost its connection at now, and returns when
// revive should look at it (zero: never, for a bind endpoint or one that
// still has a connection).
func (st *socketState) wentDown(ep *endpoint, now time.Time) time.Time {
	if st.bind || ep == st.src.unattributed || ep.conns > 0 {
		return time.Time{}
	}
	if !ep.upAt.IsZero() && now.Sub(ep.upAt) >= stayedUp {
		ep.restarts = 0
	}
	if ep.downAt.IsZero() {
		st.down = append(st.down, ep)
	}
	ep.downAt = now
	return now.Add(st.reviveAfter(ep))
}

// reviveAfter is how long ep may stay down before it is connected to again.
func (st *socketState) reviveAfter(ep *endpoint) time.Duration {
	d := 2*max(st.reconnectMax, reconnectIvl) + time.Second
	for i := 0; i < ep.restarts && d < restartBackoffMax; i++ {
		d = min(2*d, restartBackoffMax)
	}
	return d
}

// wantsEmptyRead reports whether the socket should be read until it is
// empty now rather than at its next message: after a disconnection, a
// shared socket's descriptor stays in doubt (sources) and an endpoint that
// went down cannot be restarted until it has been.
func (st *socketState) wantsEmptyRead() bool { return st.src.closingWaits() }

// anyDown reports whether an endpoint is down, for revive to look at.
func (st *socketState) anyDown() bool { return len(st.down) > 0 }

// revive connects again, at now, to the endpoints that have been down for
// longer than libzmq would take to reconnect, through disconnect and
// connect (zmq_disconnect and zmq_connect of the socket): every endpoint
// that is down goes out before any comes back. It returns when it should
// next look (zero: nothing is down), and whether the socket must be read
// until it is empty first. Monitor events read just before must already
// have been given to onEvent: a connection libzmq made a moment ago must
// not be cut.
func (st *socketState) revive(now time.Time, disconnect, connect func(endpoint string) error) (due time.Time, read bool) {
	kept, ripe := st.down[:0], false
	for _, ep := range st.down {
		if ep.downAt.IsZero() || ep.conns > 0 { // connected again
			ep.downAt = time.Time{}
			continue
		}
		if at := ep.downAt.Add(st.reviveAfter(ep)); now.Before(at) {
			due = earliest(due, at)
		} else {
			ripe = true
		}
		kept = append(kept, ep)
	}
	clear(st.down[len(kept):])
	st.down = kept
	switch {
	case !ripe:
		st.restartAfter = 0
		return due, false
	case st.src.closingWaits():
		return earliest(due, now.Add(100*time.Millisecond)), true
	case st.restartAfter == 0 || st.src.empties < st.restartAfter:
		// libzmq reports a protocol error's disconnection a moment before
		// it queues that connection's last messages: one more read to
		// empty, begun now, takes them too.
		if st.restartAfter == 0 {
			st.restartAfter = st.src.empties + 1
		}
		return earliest(due, now.Add(10*time.Millisecond)), true
	}
	st.restartAfter = 0
	// Every endpoint that is down, ripe or not, goes out before any comes
	// back (see above); those not ripe yet only lose libzmq's back-off.
	for _, ep := range st.down {
		if err := disconnect(ep.name); err != nil {
			ep.log.Debug("disconnect before connecting again", "err", err)
		}
	}
	due = time.Time{}
	kept = st.down[:0]
	for _, ep := range st.down {
		ripe := !now.Before(ep.downAt.Add(st.reviveAfter(ep)))
		if err := connect(ep.name); err != nil {
			ep.log.Error("connecting again failed; trying later", "err", err)
			kept = append(kept, ep)
			ep.downAt = now
			due = earliest(due, now.Add(st.reviveAfter(ep)))
			continue
		}
		ep.downAt = time.Time{}
		if ripe {
			ep.restarts++
			ep.stats.events[evRestarted].Add(1)
			ep.events.note(ep.log, now, evRestarted, slog.LevelWarn, "")
			due = earliest(due, ep.events.next())
		}
	}
	clear(st.down[len(kept):])
	st.down = kept
	return due, false
}

// flushEvents writes the event summaries that are due at now, and returns
// when the next one is (zero: none).
func (st *socketState) flushEvents(now time.Time) (due time.Time) {
	for _, ep := range st.src.eps {
		due = earliest(due, ep.events.flush(ep.log, now))
	}
	if ep := st.src.unattributed; ep != nil {
		due = earliest(due, ep.events.flush(ep.log, now))
	}
	return due
}

// takeDue is when an event summary noted while receiving is due (zero:
// none), for the loop to wait for.
func (st *socketState) takeDue() time.Time {
	due := st.due
	st.due = time.Time{}
	return due
}
