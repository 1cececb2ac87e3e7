package ingest

import (
	"log/slog"
	"time"
)

// libzmq gives up on an endpoint it connects to after a protocol error:
// a publisher that sends a frame over the socket's maximum message size
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

// restartBackoffMax caps the wait between restarts of an endpoint that
// never stays up.
const restartBackoffMax = 5 * time.Minute

// stayedUp is how long a connection must last for its endpoint's restart
// back-off to start over.
const stayedUp = time.Minute

// reviveAfter is how long ep may stay down before it is connected to again.
func (s *Subscriber) reviveAfter(ep *endpoint) time.Duration {
	d := 2*max(s.opt.ReconnectMax, reconnectIvl) + time.Second
	for i := 0; i < ep.restarts && d < restartBackoffMax; i++ {
		d = min(2*d, restartBackoffMax)
	}
	return d
}

// wentUp notes that ep has a connection.
func (s *Subscriber) wentUp(ep *endpoint, now time.Time) {
	ep.upAt, ep.downAt = now, time.Time{}
}

// wentDown notes that ep lost its connection, and returns when revive
// should look at it (zero: never).
func (s *Subscriber) wentDown(ep *endpoint, now time.Time) time.Time {
	if s.opt.Bind || ep == s.src.unattributed || ep.conns > 0 {
		return time.Time{}
	}
	if !ep.upAt.IsZero() && now.Sub(ep.upAt) >= stayedUp {
		ep.restarts = 0
	}
	if ep.downAt.IsZero() {
		s.down = append(s.down, ep)
	}
	ep.downAt = now
	return now.Add(s.reviveAfter(ep))
}

// revive connects again to the endpoints that have been down for longer
// than libzmq would take to reconnect. It returns when it should next
// look (zero: nothing is down), and whether the socket must be read to
// empty first.
func (s *Subscriber) revive(now time.Time) (due time.Time, read bool) {
	// A connection libzmq made a moment ago must not be cut: its event is
	// read first.
	s.due = earliest(s.due, s.drainEvents(now))
	kept, ripe := s.down[:0], false
	for _, ep := range s.down {
		if ep.downAt.IsZero() || ep.conns > 0 { // connected again
			ep.downAt = time.Time{}
			continue
		}
		if at := ep.downAt.Add(s.reviveAfter(ep)); now.Before(at) {
			due = earliest(due, at)
		} else {
			ripe = true
		}
		kept = append(kept, ep)
	}
	clear(s.down[len(kept):])
	s.down = kept
	switch {
	case !ripe:
		s.restartAfter = 0
		return due, false
	case s.src.closingWaits():
		return earliest(due, now.Add(100*time.Millisecond)), true
	case s.restartAfter == 0 || s.src.empties < s.restartAfter:
		// libzmq reports a protocol error's disconnection a moment before
		// it queues that connection's last messages: one more read to
		// empty, begun now, takes them too.
		if s.restartAfter == 0 {
			s.restartAfter = s.src.empties + 1
		}
		return earliest(due, now.Add(10*time.Millisecond)), true
	}
	s.restartAfter = 0
	// Every endpoint that is down, ripe or not, goes out before any comes
	// back (see above); those not ripe yet only lose libzmq's back-off.
	for _, ep := range s.down {
		if err := s.sock.Disconnect(ep.name); err != nil {
			ep.log.Debug("disconnect before connecting again", "err", err)
		}
	}
	due = time.Time{}
	kept = s.down[:0]
	for _, ep := range s.down {
		ripe := !now.Before(ep.downAt.Add(s.reviveAfter(ep)))
		if err := s.sock.Connect(ep.name); err != nil {
			ep.log.Error("connecting again failed; trying later", "err", err)
			kept = append(kept, ep)
			ep.downAt = now
			due = earliest(due, now.Add(s.reviveAfter(ep)))
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
	clear(s.down[len(kept):])
	s.down = kept
	return due, false
}
