package ingest

import "log/slog"

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

// sources tells which configured endpoint each message came in on, and
// keeps the per-endpoint counts until a batch is handed on.
//
// A socket with one endpoint needs no telling. A socket that connects to
// several publishers (see Group) learns each connection's descriptor from
// the monitor's connected events, which name the endpoint as configured,
// and libzmq tags every message with the descriptor it came in on
// (ZMQ_SRCFD). libzmq reports a connection before its handshake, so the
// descriptor of a message is known once the monitor has been read.
type sources struct {
	eps    []*endpoint
	byAddr map[string]*endpoint // by the address in monitor events
	byFD   map[int32]*endpoint  // by connection descriptor
	// lastFD and last skip the map for a run of messages from one
	// connection; last is reset whenever byFD changes.
	lastFD int32
	last   *endpoint
	// refresh reads the monitor's events, for a descriptor not known yet.
	refresh func()

	pending []*endpoint // endpoints with counts not yet in their stats
}

func newSources(eps []*endpoint) *sources {
	s := &sources{eps: eps}
	if len(eps) > 1 {
		s.byAddr = make(map[string]*endpoint, len(eps))
		s.byFD = make(map[int32]*endpoint, len(eps))
		for _, ep := range eps {
			s.byAddr[ep.name] = ep
		}
	}
	return s
}

// perMessage reports whether messages must carry their descriptor.
func (s *sources) perMessage() bool { return len(s.eps) > 1 }

// ofEvent is the endpoint a monitor event names. A socket with one
// endpoint owns every event, whatever address libzmq reports (a bind
// endpoint "tcp://*:5555" is reported as the address it resolved to).
func (s *sources) ofEvent(addr string) *endpoint {
	if ep, ok := s.byAddr[addr]; ok {
		return ep
	}
	return s.eps[0]
}

// connected notes that connection fd belongs to ep. A descriptor is reused
// once its connection has closed, so the newest owner wins; messages the
// old connection left unread are then counted for the new one, which
// needs a disconnect, a reconnect on the same number and a lagging reader
// all at once.
func (s *sources) connected(fd int32, ep *endpoint) {
	if s.byFD != nil {
		s.byFD[fd] = ep
		s.last = nil
	}
}

// of is the endpoint of a message that came in on connection fd.
func (s *sources) of(fd int32) *endpoint {
	if s.byFD == nil {
		return s.eps[0]
	}
	if s.last != nil && fd == s.lastFD {
		return s.last
	}
	ep, ok := s.byFD[fd]
	if !ok && s.refresh != nil {
		s.refresh()
		ep, ok = s.byFD[fd]
	}
	if !ok {
		// Not reachable as long as libzmq reports connections before
		// their messages; counted rather than lost.
		ep = s.eps[0]
	}
	s.lastFD, s.last = fd, ep
	return ep
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
