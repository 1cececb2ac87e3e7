package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/curve"
)

// Options configure one subscriber: one SUB (or PULL) socket on one
// endpoint.
type Options struct {
	Endpoint string
	// Bind makes the socket bind Endpoint (publishers connect to us);
	// otherwise it connects to a publisher that binds.
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

// What one endpoint costs, for sizing the zmq context and checking the
// file limit: a SUB socket, the PAIR socket that reads its monitor and
// libzmq's own monitor socket, each with a mailbox descriptor, plus the
// connection (connect) or the listener (bind). A bind endpoint also takes
// one descriptor per connected publisher, which no configuration knows.
const (
	socketsPerEndpoint = 3
	filesPerEndpoint   = socketsPerEndpoint + 1
	// contextSockets and baseFiles leave room for the rest: the CurveZMQ
	// authenticator, libzmq's reaper and I/O threads, the receive loops'
	// epoll and pipes, the log file, the HTTP server and its clients.
	contextSockets = 64
	baseFiles      = 256
)

// SocketsNeeded is the zmq context's socket limit (ZMQ_MAX_SOCKETS) for a
// daemon with this many endpoints; never below libzmq's default.
func SocketsNeeded(endpoints int) int {
	return max(1023, endpoints*socketsPerEndpoint+contextSockets)
}

// FilesNeeded is the least file-descriptor limit the endpoints need.
func FilesNeeded(connect, bind int) int {
	return (connect+bind)*filesPerEndpoint + bind*16 + baseFiles
}

var monitorSeq atomic.Int64

// Subscriber is one endpoint: a SUB socket and its monitor socket. After
// NewSubscriber returns, only the receive loop that runs it (loop.go)
// touches them: zmq sockets are not thread-safe.
type Subscriber struct {
	opt    Options
	sock   *zmq.Socket
	mon    *zmq.Socket
	recv   *receiver
	q      *Queue
	m      *endpointStats
	log    *slog.Logger
	events eventLog // owned by the loop, like the sockets
	conns  int      // connections open now, from the monitor's events; owned by the loop
	ready  atomic.Bool
}

// NewSubscriber creates the socket and binds or connects it, so that a bad
// endpoint or a port in use is an error at start-up, not later.
func NewSubscriber(zctx *zmq.Context, opt Options, q *Queue, m *Metrics, log *slog.Logger) (_ *Subscriber, err error) {
	s := &Subscriber{
		opt: opt,
		q:   q,
		m:   m.forEndpoint(opt.Endpoint),
		log: log.With("endpoint", opt.Endpoint),
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
		return nil, fmt.Errorf("configure socket for %s: %w", opt.Endpoint, err)
	}
	if err = s.monitor(zctx); err != nil {
		return nil, fmt.Errorf("monitor %s: %w", opt.Endpoint, err)
	}
	if opt.Bind {
		err = s.sock.Bind(opt.Endpoint)
	} else {
		err = s.sock.Connect(opt.Endpoint)
	}
	if err != nil {
		verb := map[bool]string{true: "bind", false: "connect"}[opt.Bind]
		return nil, fmt.Errorf("%s %s: %w", verb, opt.Endpoint, err)
	}
	s.recv = newReceiver(s.sock, opt.MaxMessageBytes, opt.WantPeer, opt.StripNewline)
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

// Endpoint is the configured endpoint.
func (s *Subscriber) Endpoint() string { return s.opt.Endpoint }

// fds are the descriptors libzmq signals when the socket or the monitor
// may have something to read (ZMQ_FD): the receive loop waits on them.
func (s *Subscriber) fds() (sock, mon int, err error) {
	if sock, err = s.sock.GetFd(); err != nil {
		return 0, 0, err
	}
	mon, err = s.mon.GetFd()
	return sock, mon, err
}

// deliver counts b and hands it to the sink. It reports false when the sink
// has failed; b's records are then counted as dropped.
func (s *Subscriber) deliver(b *Batch, abort <-chan struct{}) bool {
	n := len(b.Records)
	if n == 0 {
		s.q.Recycle(b)
		return true
	}
	s.m.received.Add(uint64(n))
	s.m.bytes.Add(uint64(b.Bytes))
	if b.truncated > 0 {
		s.m.truncated.Add(uint64(b.truncated))
	}
	s.m.last.Set(float64(b.Records[n-1].Time) / 1e9)
	if s.q.Send(b, abort) {
		return true
	}
	s.m.dropped.Add(float64(n))
	s.q.Recycle(b)
	return false
}

// drainEvents reads the monitor socket until it is empty: each event is
// counted, moves the connection gauge, and is logged at a bounded rate.
// It returns when the event log next has a summary to write (zero: none).
func (s *Subscriber) drainEvents(now time.Time) (due time.Time) {
	for {
		ev, addr, _, err := s.mon.RecvEvent(zmq.DONTWAIT)
		if err != nil {
			return s.events.next()
		}
		kind := eventKind(ev)
		s.m.events[kind].Add(1)
		switch ev {
		case zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED:
			s.conns++
		case zmq.EVENT_DISCONNECTED: // also ends every accepted connection whose handshake failed
			s.conns = max(s.conns-1, 0)
		}
		s.m.connections.Store(int64(s.conns))
		s.events.note(s.log, now, kind, eventLevel(ev), addr)
	}
}

// eventLevel is how loud an event is in the daemon's log: state changes an
// operator cares about at info, trouble at warn.
func eventLevel(ev zmq.Event) slog.Level {
	switch ev {
	case zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED, zmq.EVENT_LISTENING:
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
