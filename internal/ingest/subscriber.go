package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/curve"

	"aggregator/internal/queue"
)

// Options configure one subscriber: one SUB (or PULL) socket, bound to one
// endpoint or connected to one or more (see Group).
type Options struct {
	Endpoints []string
	// Bind makes the socket bind its one endpoint (publishers connect to
	// us); otherwise it connects to each, publishers that bind.
	Bind bool
	// Pull makes it a PULL socket, for PUSH producers, which wait for a
	// receiver instead of dropping; otherwise it is a SUB socket.
	Pull bool
	// Topics are subscription prefixes (SUB only); none means every message.
	Topics []string
	// StripNewline drops one "\n" or "\r\n" that ends a message.
	StripNewline bool
	// ReconnectMax caps libzmq's reconnect back-off: a publisher that
	// comes back is found within about this long.
	ReconnectMax time.Duration
	// RcvHWM is libzmq's receive high-water mark, in messages.
	RcvHWM int
	// MaxMessageBytes is the most payload a record keeps; a longer message
	// is truncated to it and counted.
	MaxMessageBytes int
	// Curve, when set, encrypts with CurveZMQ: a bind endpoint is a
	// server with this identity; a connect endpoint is a client of
	// CurveServer (and stays plain text without it).
	Curve       *curve.Identity
	CurveServer string
	// WantPeer asks libzmq for each message's peer address (a metadata
	// lookup per message, so only when the output shows it).
	WantPeer bool
}

// Socket tuning that is not worth a setting of its own.
const (
	// stopDrainMax bounds the time a stopping daemon spends taking what
	// libzmq holds. It reads each socket until it is empty, which takes
	// milliseconds: it is faster than its publishers or they would be
	// dropping already. The bound is for publishers faster than that,
	// well inside systemd's TimeoutStopSec=30s.
	stopDrainMax = 10 * time.Second
	// frameLimitFactor: libzmq itself refuses (and disconnects) a peer
	// sending a frame over this many times MaxMessageBytes; below it we
	// truncate and count. It keeps one absurd frame from taking the memory.
	frameLimitFactor = 16
	minFrameLimit    = 1 << 20

	reconnectIvl     = 100 * time.Millisecond
	heartbeatIvl     = 10 * time.Second
	heartbeatTimeout = 30 * time.Second
)

// What the sockets cost, for sizing the zmq context and checking the file
// limit. A subscriber takes a SUB socket, the PAIR socket that reads its
// monitor and libzmq's own monitor socket, each with a mailbox descriptor.
// A connect endpoint takes one descriptor for its connection; a bind
// endpoint, one for its listener and one per connected publisher, which no
// configuration knows.
const (
	socketsPerSubscriber = 3
	filesPerBind         = 1 + 16
	// contextSockets and baseFiles leave room for the rest: the CurveZMQ
	// authenticator, libzmq's reaper and I/O threads, the receive loops'
	// epoll and pipes, the log file, the HTTP server and its clients.
	contextSockets = 64
	baseFiles      = 256
)

// ConnectSockets is how many sockets of each kind (SUB, PULL) the
// endpoints the daemon connects to get at most: up to this many endpoints
// have a socket each; more share these (see Group).
const ConnectSockets = 32

// SocketsNeeded is the zmq context's socket limit (ZMQ_MAX_SOCKETS) for a
// daemon with this many subscribers (see Group); never below libzmq's
// default.
func SocketsNeeded(subscribers int) int {
	return max(1023, subscribers*socketsPerSubscriber+contextSockets)
}

// FilesNeeded is the least file-descriptor limit for this many connect and
// bind endpoints on this many subscribers.
func FilesNeeded(connect, bind, subscribers int) int {
	return connect + bind*filesPerBind + subscribers*socketsPerSubscriber + baseFiles
}

// Group makes the subscribers for opts, which differ only in their
// endpoints and kind. Each bind endpoint has a socket of its own, and so
// do the endpoints the daemon connects to, up to n of a kind (SUB, PULL);
// beyond n, those that can share (see shareable) share n sockets. Every
// endpoint is still counted, shown and logged on its own (see sources).
//
// A socket and its monitor cost libzmq memory for every endpoint that
// has one; sharing costs time instead, telling the endpoints of each
// message apart (ZMQ_SRCFD), so a few busy publishers keep their own
// sockets. The figures of both are in docs/performance.md and
// docs/architecture.md.
func Group(opts []Options, n int) []Options {
	n = max(n, 1)
	var out []Options
	groups := map[bool][]int{} // by Pull: indexes into out
	turn := map[bool]int{}
	for _, o := range opts {
		if o.Bind {
			out = append(out, o)
			continue
		}
		for _, ep := range o.Endpoints {
			g := groups[o.Pull]
			if len(g) < n || !shareable(ep) {
				one := o
				one.Endpoints = []string{ep}
				out = append(out, one)
				if shareable(ep) {
					groups[o.Pull] = append(g, len(out)-1)
				}
				continue
			}
			i := g[turn[o.Pull]%n]
			turn[o.Pull]++
			out[i].Endpoints = append(out[i].Endpoints, ep)
		}
	}
	return out
}

// shareable reports whether an endpoint can share a socket: whether libzmq
// names it in every event exactly as it is written. It does for an IPv4
// address and an IPC path. A host name it names as configured for the
// first connection, then by the address that resolved to, which may change
// and may be another endpoint's; such endpoints keep a socket each.
func shareable(endpoint string) bool {
	scheme, rest, _ := strings.Cut(endpoint, "://")
	switch scheme {
	case "ipc":
		return true
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return false
		}
		addr, err := netip.ParseAddr(host)
		n, perr := strconv.Atoi(port)
		return err == nil && addr.Is4() && addr.String() == host && perr == nil && strconv.Itoa(n) == port
	}
	return false
}

var monitorSeq atomic.Int64

// Subscriber is one socket and its monitor socket, on one or more
// endpoints. After NewSubscriber returns, only the receive loop that runs
// it (loop.go) touches them: zmq sockets are not thread-safe.
type Subscriber struct {
	opt   Options
	sock  *zmq.Socket
	mon   *zmq.Socket
	recv  *receiver
	st    *socketState // its endpoints' connections, owned by the loop like the sockets
	q     *queue.Queue
	m     *Metrics
	ready atomic.Bool
}

// NewSubscriber creates the socket and binds or connects it, so that a bad
// endpoint or a port in use is an error at start-up, not later.
func NewSubscriber(zctx *zmq.Context, opt Options, q *queue.Queue, m *Metrics, log *slog.Logger) (_ *Subscriber, err error) {
	if len(opt.Endpoints) == 0 || (opt.Bind && len(opt.Endpoints) > 1) {
		return nil, fmt.Errorf("a subscriber binds one endpoint or connects to one or more, not %q", opt.Endpoints)
	}
	s := &Subscriber{opt: opt, q: q, m: m}
	eps := make([]*endpoint, len(opt.Endpoints))
	for i, name := range opt.Endpoints {
		eps[i] = &endpoint{name: name, stats: m.forEndpoint(name), log: log.With("endpoint", name)}
	}
	src := newSources(eps, func() *endpoint {
		ep := &endpoint{name: Unattributed, stats: m.unattributedStats(), log: log.With("endpoint", Unattributed)}
		ep.log.Warn("a message or event of a shared socket whose endpoint is uncertain: it is counted and written as unattributed (see docs/architecture.md)",
			"socket", s.Endpoint())
		return ep
	})
	s.st = &socketState{bind: opt.Bind, reconnectMax: opt.ReconnectMax, src: src}
	src.refresh = func() { s.st.due = earliest(s.st.due, s.drainEvents(time.Now())) }
	src.eventsWaiting = func() bool {
		// ZMQ_EVENTS costs one call into libzmq and no allocation, where a
		// receive that finds nothing costs an error value.
		ev, err := s.mon.GetEvents()
		return err != nil || ev&zmq.POLLIN != 0
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	kind := zmq.SUB
	if opt.Pull {
		kind = zmq.PULL
	}
	if s.sock, err = zctx.NewSocket(kind); err != nil {
		return nil, fmt.Errorf("new socket: %w", err)
	}
	if err = s.configure(); err != nil {
		return nil, fmt.Errorf("configure socket for %s: %w", s.Endpoint(), err)
	}
	if err = s.monitor(zctx); err != nil {
		return nil, fmt.Errorf("monitor %s: %w", s.Endpoint(), err)
	}
	for _, ep := range opt.Endpoints {
		if opt.Bind {
			err = s.sock.Bind(ep)
		} else {
			err = s.sock.Connect(ep)
		}
		if err != nil {
			verb := map[bool]string{true: "bind", false: "connect"}[opt.Bind]
			return nil, fmt.Errorf("%s %s: %w", verb, ep, err)
		}
	}
	s.recv = newReceiver(s.sock, src, opt.MaxMessageBytes, opt.WantPeer, opt.StripNewline)
	s.ready.Store(true)
	return s, nil
}

func (s *Subscriber) configure() error {
	limit := max(int64(s.opt.MaxMessageBytes)*frameLimitFactor, minFrameLimit)
	steps := []error{
		s.sock.SetLinger(0),
		s.sock.SetRcvhwm(s.opt.RcvHWM),
		s.sock.SetMaxmsgsize(limit),
		s.sock.SetReconnectIvl(reconnectIvl),
		s.sock.SetReconnectIvlMax(max(s.opt.ReconnectMax, reconnectIvl)),
		s.sock.SetHeartbeatIvl(heartbeatIvl),
		s.sock.SetHeartbeatTimeout(heartbeatTimeout),
		s.sock.SetTcpKeepalive(1),
	}
	switch {
	case s.opt.Curve != nil && s.opt.Bind:
		steps = append(steps, curve.Server(s.sock, *s.opt.Curve))
	case s.opt.Curve != nil && s.opt.CurveServer != "":
		steps = append(steps, curve.Client(s.sock, *s.opt.Curve, s.opt.CurveServer))
	}
	if s.opt.Pull {
		return errors.Join(steps...)
	}
	topics := s.opt.Topics
	if len(topics) == 0 {
		topics = []string{""}
	}
	for _, t := range topics {
		steps = append(steps, s.sock.SetSubscribe(t))
	}
	return errors.Join(steps...)
}

// monitor asks libzmq to report connection events on an inproc PAIR socket.
// It must run before bind/connect, or the first events are lost.
func (s *Subscriber) monitor(zctx *zmq.Context) error {
	addr := fmt.Sprintf("inproc://aggregator-monitor-%d", monitorSeq.Add(1))
	// Not EVENT_CONNECT_RETRIED: a thousand absent publishers would send
	// hundreds a second, costing an idle daemon more than everything else
	// it does; the connection gauge already says which endpoints are down.
	events := zmq.EVENT_CONNECTED | zmq.EVENT_LISTENING |
		zmq.EVENT_BIND_FAILED | zmq.EVENT_ACCEPTED | zmq.EVENT_ACCEPT_FAILED |
		zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL |
		zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
	if err := s.sock.Monitor(addr, events); err != nil {
		return err
	}
	var err error
	if s.mon, err = zctx.NewSocket(zmq.PAIR); err != nil {
		return err
	}
	// libzmq sends monitor events with a blocking send from its I/O
	// thread: a full monitor pipe (a burst of connections while the loop
	// waits on the writer) would stall every socket that thread serves.
	// A receive high-water mark of 0 makes the inproc pipe unbounded.
	if err = errors.Join(s.mon.SetLinger(0), s.mon.SetRcvhwm(0)); err != nil {
		return err
	}
	return s.mon.Connect(addr)
}

// Ready reports whether the socket is bound or connecting.
func (s *Subscriber) Ready() bool { return s.ready.Load() }

// Endpoint names the subscriber: its endpoint, or the first of them and
// how many more.
func (s *Subscriber) Endpoint() string {
	if n := len(s.opt.Endpoints); n > 1 {
		return fmt.Sprintf("%s and %d more", s.opt.Endpoints[0], n-1)
	}
	return s.opt.Endpoints[0]
}

// fds are the descriptors libzmq signals when the socket or the monitor
// may have something to read (ZMQ_FD): the receive loop waits on them.
func (s *Subscriber) fds() (sock, mon int, err error) {
	if sock, err = s.sock.GetFd(); err != nil {
		return 0, 0, err
	}
	mon, err = s.mon.GetFd()
	return sock, mon, err
}

// deliver hands b to the sink, and publishes the counts of what was
// received.
func (s *Subscriber) deliver(b *queue.Batch) {
	s.st.src.publish()
	n := len(b.Records)
	if n == 0 {
		s.q.Recycle(b)
		return
	}
	s.m.LastMessage.Set(float64(b.Records[n-1].Time) / 1e9)
	s.q.Send(b)
}

// drainEvents reads the monitor socket until it is empty, giving each
// event to the socket's state (socketState.onEvent). It returns when
// something is next due (zero: nothing).
func (s *Subscriber) drainEvents(now time.Time) (due time.Time) {
	for {
		ev, addr, val, err := s.mon.RecvEvent(zmq.DONTWAIT)
		if err != nil {
			return due
		}
		// val is the descriptor for connected and disconnected events.
		due = earliest(due, s.st.onEvent(now, monitorEvent{kind: eventKind(ev), addr: addr, fd: int32(val)}))
	}
}

// revive has the socket's state connect again to endpoints that stayed
// down (see socketState), after reading the monitor: a connection libzmq
// made a moment ago must not be cut.
func (s *Subscriber) revive(now time.Time) (due time.Time, read bool) {
	s.st.due = earliest(s.st.due, s.drainEvents(now))
	return s.st.revive(now, s.sock.Disconnect, s.sock.Connect)
}

// earliest is the earlier of two times, where zero means never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// eventLevel is how loud an event is in the daemon's log: state changes an
// operator cares about at info, trouble at warn.
func eventLevel(kind int) slog.Level {
	switch kind {
	case evConnected, evAccepted, evListening:
		return slog.LevelInfo
	default:
		return slog.LevelWarn
	}
}

// Close closes the sockets. The receive loop does it when it returns; call
// it only for a subscriber that was never run.
func (s *Subscriber) Close() {
	s.ready.Store(false)
	if s.sock != nil {
		s.sock.Monitor("", 0) // stop the monitor before its reader goes away
		s.sock.Close()
		s.sock = nil
	}
	if s.mon != nil {
		s.mon.Close()
		s.mon = nil
	}
}
