package ingest

import (
	"fmt"
	"log/slog"
	"net/netip"
	"syscall"
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
}

// Unattributed is the endpoint named for messages and events of a shared
// socket whose endpoint is uncertain (see sources).
const Unattributed = "unattributed"

// sources tells which configured endpoint each message came in on, and
// keeps the per-endpoint counts until a batch is handed on.
//
// A socket with one endpoint needs no telling. A socket that connects to
// several publishers (see Group) learns each connection's descriptor from
// the monitor's connected and disconnected events, and libzmq tags every
// message with the descriptor it came in on (ZMQ_SRCFD). libzmq reports a
// connection before its handshake, and its disconnection after its last
// message was queued and before its descriptor is closed, so:
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
// libzmq names an endpoint in its events as configured for the first
// connection, and by the address it resolved to after that; the resolved
// address (the peer of the first connection) is learnt as an alias.
type sources struct {
	eps    []*endpoint
	byAddr map[string]*endpoint // by the address in monitor events, aliases included
	byFD   map[int32]*conn      // by connection descriptor
	closed []int32              // descriptors whose connection closed since the socket was last read empty
	// lastFD and last skip the map for a run of messages from one
	// connection; last is reset whenever byFD changes.
	lastFD int32
	last   *endpoint
	// refresh reads the monitor's events, for a descriptor not known yet.
	refresh func()
	// unattributed is made when first needed; its stats are shared by
	// every subscriber.
	unattributed    *endpoint
	newUnattributed func() *endpoint

	pending []*endpoint // endpoints with counts not yet in their stats
}

// conn is what the monitor said of one connection descriptor.
type conn struct {
	ep        *endpoint
	closed    bool // disconnected; its last messages may still be waiting
	ambiguous bool // reused by another endpoint before the socket was read empty
}

func newSources(eps []*endpoint, unattributed func() *endpoint) *sources {
	s := &sources{eps: eps, newUnattributed: unattributed}
	if len(eps) > 1 {
		s.byAddr = make(map[string]*endpoint, len(eps))
		s.byFD = make(map[int32]*conn, len(eps))
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

// connected notes a new connection of ep on descriptor fd, and learns the
// address libzmq will name ep by from now on.
func (s *sources) connected(fd int32, ep *endpoint) {
	if s.byFD == nil {
		return
	}
	s.last = nil
	old, reused := s.byFD[fd]
	s.byFD[fd] = &conn{ep: ep, ambiguous: reused && old.closed && old.ep != ep}
	if alias, ok := peerEndpoint(fd); ok {
		if _, taken := s.byAddr[alias]; !taken {
			s.byAddr[alias] = ep
		}
	}
}

// disconnected notes that the connection on fd closed.
func (s *sources) disconnected(fd int32) {
	if c, ok := s.byFD[fd]; ok && !c.closed {
		c.closed = true
		s.closed = append(s.closed, fd)
		s.last = nil
	}
}

// emptied is called when the socket has been read empty: no closed
// connection has a message waiting any more.
func (s *sources) emptied() {
	if len(s.closed) == 0 {
		return
	}
	for _, fd := range s.closed {
		if c, ok := s.byFD[fd]; ok {
			if c.closed {
				delete(s.byFD, fd)
			} else {
				c.ambiguous = false
			}
		}
	}
	s.closed = s.closed[:0]
	s.last = nil
}

// of is the endpoint of a message that came in on connection fd (-1: a
// message without one, from an inproc peer or a ZMTP 2.0 publisher).
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

// peerEndpoint is the endpoint string libzmq makes of a TCP connection's
// peer address: tcp://1.2.3.4:5555 or tcp://[::1]:5555.
func peerEndpoint(fd int32) (string, bool) {
	sa, err := syscall.Getpeername(int(fd))
	if err != nil {
		return "", false
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return fmt.Sprintf("tcp://%s:%d", netip.AddrFrom4(a.Addr), a.Port), true
	case *syscall.SockaddrInet6:
		return fmt.Sprintf("tcp://[%s]:%d", netip.AddrFrom16(a.Addr), a.Port), true
	}
	return "", false
}
