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
// sent while it was cut off.
//
// zmq_disconnect drops what the endpoint's queue still holds, so an
// endpoint is only restarted once the socket has been read empty after
// its disconnection (see Subscriber.emptiedEpoch).

// reviveAfter is how long an endpoint the daemon connects to may stay down
// before the daemon connects to it again.
func (s *Subscriber) reviveAfter() time.Duration {
	return 2*max(s.opt.ReconnectMax, reconnectIvl) + time.Second
}

// wentDown notes that ep lost its connection.
func (s *Subscriber) wentDown(ep *endpoint, now time.Time) time.Time {
	if s.opt.Bind || ep == s.src.unattributed || ep.conns > 0 {
		return time.Time{}
	}
	s.epoch++
	if ep.downAt.IsZero() {
		s.down = append(s.down, ep)
	}
	ep.downAt, ep.downEpoch = now, s.epoch
	return now.Add(s.reviveAfter())
}

// revive connects again to the endpoints that have been down for longer
// than libzmq would take to reconnect. It returns when it should next
// look (zero: nothing is down), and whether the socket must be read to
// empty first.
func (s *Subscriber) revive(now time.Time) (due time.Time, read bool) {
	// A connection libzmq made a moment ago must not be cut: its event is
	// read first.
	s.due = earliest(s.due, s.drainEvents(now))
	kept := s.down[:0]
	for _, ep := range s.down {
		switch {
		case ep.downAt.IsZero() || ep.conns > 0: // connected again
			ep.downAt = time.Time{}
			continue
		case now.Before(ep.downAt.Add(s.reviveAfter())):
			due = earliest(due, ep.downAt.Add(s.reviveAfter()))
		case s.emptiedEpoch < ep.downEpoch:
			read = true
			due = earliest(due, now.Add(100*time.Millisecond))
		default:
			err := s.sock.Disconnect(ep.name)
			if err == nil {
				err = s.sock.Connect(ep.name)
			}
			ep.stats.events[evRestarted].Add(1)
			ep.events.note(ep.log, now, evRestarted, slog.LevelWarn, "")
			if err != nil {
				ep.log.Error("connecting again failed", "err", err)
			}
			ep.downAt = time.Time{}
			continue
		}
		kept = append(kept, ep)
	}
	clear(s.down[len(kept):])
	s.down = kept
	return due, read
}
