package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/curve"
)

// Options configure one subscriber: one SUB socket on one endpoint.
type Options struct {
	Endpoint string
	// Bind makes the socket bind Endpoint (publishers connect to us);
	// otherwise it connects to a publisher that binds.
	Bind bool
	// Topics are subscription prefixes; none means every message.
	Topics []string
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
	// pollInterval bounds how long an idle subscriber waits before it
	// looks at its context again.
	pollInterval = 100 * time.Millisecond
	// stopDrain bounds the time a stopping subscriber spends taking
	// messages libzmq has already queued.
	stopDrain = 500 * time.Millisecond
	// frameLimitFactor: libzmq itself refuses (and disconnects) a peer
	// sending a frame over this many times MaxMessageBytes; below it we
	// truncate and count. It keeps one absurd frame from taking the memory.
	frameLimitFactor = 16
	minFrameLimit    = 1 << 20

	reconnectIvl     = 100 * time.Millisecond
	reconnectIvlMax  = 5 * time.Second
	heartbeatIvl     = 10 * time.Second
	heartbeatTimeout = 30 * time.Second
)

var monitorSeq atomic.Int64

// Subscriber owns one SUB socket and its monitor socket. Only the goroutine
// running Run touches them after NewSubscriber returns: zmq sockets are not
// thread-safe.
type Subscriber struct {
	opt    Options
	sock   *zmq.Socket
	mon    *zmq.Socket
	poller *zmq.Poller
	recv   *receiver
	q      *Queue
	m      endpointMetrics
	log    *slog.Logger
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
	if s.sock, err = zctx.NewSocket(zmq.SUB); err != nil {
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
	s.recv = newReceiver(s.sock, opt.MaxMessageBytes, opt.WantPeer)
	s.poller = zmq.NewPoller()
	s.poller.Add(s.sock, zmq.POLLIN)
	s.poller.Add(s.mon, zmq.POLLIN)
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
		s.sock.SetReconnectIvlMax(reconnectIvlMax),
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
	events := zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_LISTENING |
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
	if err = s.mon.SetLinger(0); err != nil {
		return err
	}
	return s.mon.Connect(addr)
}

// Ready reports whether the socket is bound or connecting.
func (s *Subscriber) Ready() bool { return s.ready.Load() }

// Endpoint is the configured endpoint.
func (s *Subscriber) Endpoint() string { return s.opt.Endpoint }

// Run receives until ctx is done, then takes what libzmq has already queued
// (for at most stopDrain), hands over the last batch and closes the socket.
// It hands batches on as soon as the socket has nothing more waiting, so an
// idle daemon forwards each message at once. abort is closed when the sink
// has failed; batches that can no longer be delivered are counted as
// dropped.
func (s *Subscriber) Run(ctx context.Context, abort <-chan struct{}) error {
	defer s.Close()
	b := s.q.Get(s.opt.Endpoint)
	for ctx.Err() == nil {
		switch errno := s.recv.fill(b); errno {
		case 0: // b is full
		case syscall.EAGAIN:
			if len(b.Records) == 0 {
				s.wait()
				continue
			}
		default:
			s.deliver(b, abort)
			return fmt.Errorf("receive on %s: %w", s.opt.Endpoint, errno)
		}
		if !s.deliver(b, abort) {
			return nil
		}
		b = s.q.Get(s.opt.Endpoint)
		s.events()
	}
	s.ready.Store(false)
	deadline := time.Now().Add(stopDrain)
	for time.Now().Before(deadline) {
		errno := s.recv.fill(b)
		if b.full() {
			if !s.deliver(b, abort) {
				return nil
			}
			b = s.q.Get(s.opt.Endpoint)
		}
		if errno != 0 {
			break
		}
	}
	s.deliver(b, abort)
	return nil
}

// wait blocks until the socket or its monitor has something, or for at
// most pollInterval.
func (s *Subscriber) wait() {
	polled, err := s.poller.Poll(pollInterval)
	if err != nil {
		return
	}
	for _, p := range polled {
		if p.Socket == s.mon {
			s.events()
		}
	}
}

// deliver counts b and hands it to the sink. It reports false when the sink
// has failed; b's records are then counted as dropped.
func (s *Subscriber) deliver(b *Batch, abort <-chan struct{}) bool {
	n := len(b.Records)
	if n == 0 {
		s.q.Recycle(b)
		return true
	}
	s.m.received.Add(float64(n))
	s.m.bytes.Add(float64(b.Bytes))
	if b.truncated > 0 {
		s.m.truncated.Add(float64(b.truncated))
	}
	s.m.last.Set(float64(b.Records[n-1].Time) / 1e9)
	if s.q.Send(b, abort) {
		return true
	}
	s.m.dropped.Add(float64(n))
	s.q.Recycle(b)
	return false
}

// events drains the monitor socket: counts each event and logs the state
// changes an operator cares about.
func (s *Subscriber) events() {
	for {
		ev, addr, _, err := s.mon.RecvEvent(zmq.DONTWAIT)
		if err != nil {
			return
		}
		name := eventName(ev)
		s.m.event(name)
		switch ev {
		case zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED:
			s.log.Info("publisher connected", "event", name, "addr", addr)
		case zmq.EVENT_DISCONNECTED:
			s.log.Warn("publisher disconnected", "addr", addr)
		case zmq.EVENT_LISTENING:
			s.log.Info("listening", "addr", addr)
		case zmq.EVENT_CONNECT_RETRIED:
			s.log.Debug("publisher not reachable, retrying", "addr", addr)
		default:
			s.log.Warn("socket event", "event", name, "addr", addr)
		}
	}
}

func eventName(ev zmq.Event) string {
	switch ev {
	case zmq.EVENT_CONNECTED:
		return "connected"
	case zmq.EVENT_CONNECT_RETRIED:
		return "connect_retried"
	case zmq.EVENT_LISTENING:
		return "listening"
	case zmq.EVENT_BIND_FAILED:
		return "bind_failed"
	case zmq.EVENT_ACCEPTED:
		return "accepted"
	case zmq.EVENT_ACCEPT_FAILED:
		return "accept_failed"
	case zmq.EVENT_DISCONNECTED:
		return "disconnected"
	case zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		return "handshake_failed"
	default:
		return "other"
	}
}

// Close closes the sockets. Run does it on return; call it only for a
// subscriber whose Run never started.
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
