package ingest

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// endpoint is one configured endpoint of a subscriber. Scrapes read its
// stats; everything else is owned by the subscriber's loop: its log lines,
// its open connections, and the counts of messages received since the last
// batch was handed on.
type endpoint struct {
	name   string
	stats  *endpointStats
	log    *slog.Logger
	events eventLog
	conns  int

	received, bytes, truncated uint64 // not yet added to stats
	pending                    bool   // on sources.pending

	// When the endpoint last connected, and lost its connection (zero: it
	// has one, or never had), and how often in a row the daemon connected
	// to it again (revive.go).
	upAt, downAt time.Time
	restarts     int
}

// Unattributed is the endpoint named for messages and events of a shared
// socket whose endpoint is uncertain (see sources).
const Unattributed = "unattributed"

// sources tells which configured endpoint each message came in on, and
// keeps the per-endpoint counts until a batch is handed on.
//
// A socket with one endpoint needs no telling. A socket that connects to
// several publishers (see Group) learns each connection's descriptor from
// the monitor's connected and disconnected events, which name the endpoint
// as configured (Group shares only endpoints libzmq always names so), and
// libzmq tags every message with the descriptor it came in on (ZMQ_SRCFD).
// libzmq reports a connection before its handshake, and its disconnection
// after its messages were queued and before its descriptor is closed, so:
//
//   - a message on a descriptor not known yet belongs to a connection the
//     monitor has already reported: the monitor is read, then it is known;
//   - a closed connection's messages may still be waiting after it closed,
//     until the socket has been read empty: they are still its endpoint's;
//   - when another endpoint's connection gets the descriptor of a closed
//     one before the socket was read empty, a message on it could be
//     either's. Until the socket is empty, such messages are counted and
//     written as Unattributed rather than guessed. That takes a receive
//     loop behind on its reading, a publisher leaving and another arriving
//     on the same descriptor number, all at once.
//
// What this cannot see: a connection closed and its descriptor reused by
// another endpoint whose first messages arrive, all within one receive of
// at most a batch; and, with more than one I/O thread (AGG_IO_THREADS),
// libzmq reporting a connection a moment after its first message. A
// message without a descriptor (from a ZMTP 2.0 publisher) is Unattributed.
type sources struct {
	eps    []*endpoint
	byAddr map[string]*endpoint // by the address in monitor events
	byFD   map[int32]*conn      // by connection descriptor
	// seq counts disconnections, emptiedSeq is what it was when a read
	// that found the socket empty began, and empties counts such reads
	// (revive.go waits on them too). closing holds the descriptors whose
	// connection closed, with seq then, until the socket has been read
	// empty since.
	seq, emptiedSeq, empties uint64
	closing                  map[int32]uint64
	// lastFD and last skip the map for a run of messages from one
	// connection; last is reset whenever byFD changes.
	lastFD int32
	last   *endpoint
	// refresh reads the monitor's events, for a descriptor not known yet;
	// eventsWaiting says, without reading, whether there are any.
	refresh       func()
	eventsWaiting func() bool
	// unattributed is made when first needed; its stats are shared by
	// every subscriber.
	unattributed    *endpoint
	newUnattributed func() *endpoint

	pending []*endpoint // endpoints with counts not yet in their stats

	// reusedByOther counts connections that took a descriptor whose
	// previous connection was another endpoint's: what the tests of a real
	// socket must see happen before they judge the attribution.
	reusedByOther atomic.Int64
}

// conn is what the monitor said of one connection descriptor.
type conn struct {
	ep        *endpoint
	closed    bool // disconnected; its last messages may still be waiting
	ambiguous bool // may carry messages of a closed connection of another endpoint
}

func newSources(eps []*endpoint, unattributed func() *endpoint) *sources {
	s := &sources{eps: eps, newUnattributed: unattributed}
	if len(eps) > 1 {
		s.byAddr = make(map[string]*endpoint, len(eps))
		s.byFD = make(map[int32]*conn, len(eps))
		s.closing = map[int32]uint64{}
		for _, ep := range eps {
			s.byAddr[ep.name] = ep
		}
	}
	return s
}

// perMessage reports whether messages must carry their descriptor.
func (s *sources) perMessage() bool { return s.byFD != nil }

func (s *sources) unknown() *endpoint {
	if s.unattributed == nil {
		s.unattributed = s.newUnattributed()
	}
	return s.unattributed
}

// ofEvent is the endpoint a monitor event is about. A socket with one
// endpoint owns every event, whatever address libzmq reports (a bind
// endpoint "tcp://*:5555" is reported as the address it resolved to).
func (s *sources) ofEvent(addr string, fd int32, disconnected bool) *endpoint {
	if s.byFD == nil {
		return s.eps[0]
	}
	if c, ok := s.byFD[fd]; ok && disconnected && !c.closed {
		return c.ep
	}
	if ep, ok := s.byAddr[addr]; ok {
		return ep
	}
	return s.unknown()
}

// connected notes a new connection of ep on descriptor fd.
func (s *sources) connected(fd int32, ep *endpoint) {
	if s.byFD == nil {
		return
	}
	s.last = nil
	old, reused := s.byFD[fd]
	if reused && old.ep != ep {
		s.reusedByOther.Add(1)
	}
	// The old connection's messages may still be waiting: those of a
	// connection of another endpoint, or of any endpoint if the old one
	// was already in doubt, can no longer be told from the new ones.
	s.byFD[fd] = &conn{ep: ep, ambiguous: reused && (old.ep != ep || old.ambiguous)}
}

// disconnected notes that the connection on fd closed.
func (s *sources) disconnected(fd int32) {
	s.seq++
	if c, ok := s.byFD[fd]; ok && !c.closed {
		c.closed = true
		s.closing[fd] = s.seq
		s.last = nil
	}
}

// closingMark is what emptied needs: taken before reading the socket.
func (s *sources) closingMark() uint64 { return s.seq }

// closingWaits reports whether a closed connection may still have
// messages waiting: the socket is worth reading until it is empty.
func (s *sources) closingWaits() bool { return s.emptiedSeq < s.seq }

// emptied is called when the socket has been read empty, with the mark
// taken before the read: connections closed before then have no message
// waiting any more.
func (s *sources) emptied(mark uint64) {
	s.emptiedSeq = max(s.emptiedSeq, mark)
	s.empties++
	for fd, at := range s.closing {
		if at > mark {
			continue
		}
		delete(s.closing, fd)
		if c, ok := s.byFD[fd]; ok {
			if c.closed {
				delete(s.byFD, fd)
			} else {
				c.ambiguous = false
			}
		}
		s.last = nil
	}
}

// of is the endpoint of a message that came in on connection fd (-1: a
// message without one).
func (s *sources) of(fd int32) *endpoint {
	if s.byFD == nil {
		return s.eps[0]
	}
	if s.last != nil && fd == s.lastFD {
		return s.last
	}
	c, ok := s.byFD[fd]
	if !ok && fd >= 0 && s.refresh != nil {
		s.refresh()
		c, ok = s.byFD[fd]
	}
	if !ok || c.ambiguous {
		return s.unknown()
	}
	s.lastFD, s.last = fd, c.ep
	return c.ep
}

// count adds one message of payload bytes to ep's pending counts.
func (s *sources) count(ep *endpoint, payload int, truncated bool) {
	ep.received++
	ep.bytes += uint64(payload)
	if truncated {
		ep.truncated++
	}
	if !ep.pending {
		ep.pending = true
		s.pending = append(s.pending, ep)
	}
}

// publish adds the pending counts to the endpoints' stats, where scrapes
// see them.
func (s *sources) publish() {
	for _, ep := range s.pending {
		ep.stats.received.Add(ep.received)
		ep.stats.bytes.Add(ep.bytes)
		if ep.truncated > 0 {
			ep.stats.truncated.Add(ep.truncated)
		}
		ep.received, ep.bytes, ep.truncated, ep.pending = 0, 0, 0, false
	}
	clear(s.pending)
	s.pending = s.pending[:0]
}
