package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"aggregator/internal/curve"
)

// publisher owns the one long-lived XPUB socket. HTTP handlers hand it
// messages through a bounded queue and never wait: a full queue drops the
// message and counts it, so a slow or absent subscriber cannot slow the
// API. (The original bound, slept a second, sent and unbound on every
// request.)
//
// A PUB socket drops what it sends while nobody subscribes, so the first
// requests after a start, before the aggregator's subscription arrives,
// would be lost without a trace. The XPUB socket hands the publisher the
// subscriptions; while no subscription matches a message, the message is
// held (at most HoldMessages, for at most HoldFor) and sent as soon as
// one does. What expires or overflows is counted as no_subscriber.
type publisher struct {
	sock     *zmq.Socket
	topic    []byte
	queue    chan []byte
	closing  chan struct{} // closed by close: run sends what is queued and returns
	done     chan struct{}
	log      *slog.Logger
	m        *pubMetrics
	holdMax  int
	holdFor  time.Duration
	up       atomic.Bool
	held     []heldMessage   // owned by run
	subs     map[string]bool // topic prefixes subscribed to now; owned by run
	heldSize atomic.Int64    // len(held), for the gauge
}

type heldMessage struct {
	msg []byte
	at  time.Time
}

// holdTick is how often held messages look for a subscriber.
const holdTick = 20 * time.Millisecond

type pubMetrics struct {
	published    prometheus.Counter
	queueFull    prometheus.Counter
	stopping     prometheus.Counter
	sendError    prometheus.Counter
	noSubscriber prometheus.Counter
}

func newPubMetrics(reg prometheus.Registerer, queue, held func() float64) *pubMetrics {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "downcase_messages_dropped_total",
		Help: "Messages not published, by reason (queue_full: the hand-off queue was full; stopping: a request answered after the publisher stopped; no_subscriber: held longer than DOWNCASE_HOLD_FOR or beyond DOWNCASE_HOLD_MESSAGES with no subscriber; send_error: libzmq refused the message).",
	}, []string{"reason"})
	m := &pubMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "downcase_messages_published_total",
			Help: "Messages sent while a subscription matched them.",
		}),
		queueFull:    dropped.WithLabelValues("queue_full"),
		stopping:     dropped.WithLabelValues("stopping"),
		sendError:    dropped.WithLabelValues("send_error"),
		noSubscriber: dropped.WithLabelValues("no_subscriber"),
	}
	reg.MustRegister(m.published, dropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "downcase_publish_queue_messages",
		Help: "Messages waiting for the publisher.",
	}, queue), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "downcase_held_messages",
		Help: "Messages held because no subscriber wants them yet.",
	}, held))
	return m
}

func newPublisher(zctx *zmq.Context, cfg Config, keys curve.Keys, m *pubMetrics, log *slog.Logger) (_ *publisher, err error) {
	sock, err := zctx.NewSocket(zmq.XPUB)
	if err != nil {
		return nil, fmt.Errorf("new socket: %w", err)
	}
	defer func() {
		if err != nil {
			sock.Close()
		}
	}()
	// Heartbeats tell a subscriber gone without a word (a host lost) from
	// one that is there: its subscription ends, and messages are held.
	if err := errors.Join(sock.SetSndhwm(cfg.SndHWM), sock.SetLinger(cfg.Linger),
		sock.SetHeartbeatIvl(10*time.Second), sock.SetHeartbeatTimeout(30*time.Second)); err != nil {
		return nil, fmt.Errorf("configure socket: %w", err)
	}
	id, server := keys.ID, keys.Server
	// One socket binds and connects, so CurveZMQ is set per endpoint:
	// the options apply to the binds and connects made after them.
	if id != nil {
		if err := curve.Server(sock, *id); err != nil {
			return nil, fmt.Errorf("CurveZMQ server: %w", err)
		}
	}
	for _, ep := range cfg.PubBind {
		if err := sock.Bind(ep); err != nil {
			return nil, fmt.Errorf("bind %s (DOWNCASE_PUB_BIND): %w", ep, err)
		}
	}
	if server != "" {
		if err := errors.Join(sock.SetCurveServer(0), curve.Client(sock, *id, server)); err != nil {
			return nil, fmt.Errorf("CurveZMQ client: %w", err)
		}
	}
	for _, ep := range cfg.PubConnect {
		if err := sock.Connect(ep); err != nil {
			return nil, fmt.Errorf("connect %s (DOWNCASE_PUB_CONNECT): %w", ep, err)
		}
	}
	p := &publisher{
		sock:    sock,
		queue:   make(chan []byte, cfg.QueueLength),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		log:     log,
		m:       m,
		holdMax: cfg.HoldMessages,
		holdFor: cfg.HoldFor,
		subs:    map[string]bool{},
	}
	if cfg.Topic != "" {
		p.topic = []byte(cfg.Topic)
	}
	p.up.Store(true)
	return p, nil
}

// offer queues msg without waiting; it reports false when it was dropped.
// After close (a request that outlived the HTTP server's shutdown) the
// message is dropped and counted too, never sent on a closed channel.
func (p *publisher) offer(msg []byte) bool {
	select {
	case <-p.closing:
		p.m.stopping.Inc()
		return false
	default:
	}
	select {
	case p.queue <- msg:
		return true
	default:
		p.m.queueFull.Inc()
		return false
	}
}

// run sends until close is called and the queue is empty, then closes the
// socket; libzmq's linger gives the last messages their bounded time.
// While messages are held it wakes every holdTick to look for a
// subscription; otherwise it sleeps until a message comes.
func (p *publisher) run() {
	defer close(p.done)
	defer p.sock.Close()
	tick := time.NewTicker(holdTick)
	defer tick.Stop()
	for {
		var wake <-chan time.Time
		if len(p.held) > 0 {
			wake = tick.C
		}
		select {
		case msg := <-p.queue:
			p.subscriptions()
			p.release(time.Now())
			p.publish(msg, time.Now())
		case <-p.closing:
			for len(p.queue) > 0 { // what was queued before the close
				p.subscriptions()
				p.release(time.Now())
				p.publish(<-p.queue, time.Now())
			}
			p.subscriptions()
			p.release(time.Now())
			p.expire(time.Time{}) // nobody will take them now
			p.up.Store(false)
			return
		case now := <-wake:
			p.subscriptions()
			p.release(now)
			p.expire(now)
		}
	}
}

// subscriptions reads the subscription changes the XPUB socket has
// queued. Without ZMQ_XPUB_VERBOSE it passes on the first subscription to
// a topic and the last unsubscription, so a set of topics is the state.
func (p *publisher) subscriptions() {
	for {
		msg, err := p.sock.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			return
		}
		if len(msg) == 0 {
			continue
		}
		topic := string(msg[1:])
		switch msg[0] {
		case 1:
			p.subs[topic] = true
			p.log.Debug("subscription", "topic", topic)
		case 0:
			delete(p.subs, topic)
			p.log.Debug("unsubscription", "topic", topic)
		}
	}
}

// wanted reports whether a subscription matches msg, as XPUB matches:
// a prefix of the first frame.
func (p *publisher) wanted(msg []byte) bool {
	first := msg
	if p.topic != nil {
		first = p.topic
	}
	for t := range p.subs {
		if bytes.HasPrefix(first, []byte(t)) {
			return true
		}
	}
	return false
}

// publish sends msg if someone wants it, or holds it.
func (p *publisher) publish(msg []byte, now time.Time) {
	if !p.wanted(msg) {
		if p.holdMax == 0 {
			p.m.noSubscriber.Inc()
			return
		}
		if len(p.held) >= p.holdMax { // the oldest makes room
			p.held = p.held[1:]
			p.m.noSubscriber.Inc()
		}
		p.held = append(p.held, heldMessage{msg, now})
		p.heldSize.Store(int64(len(p.held)))
		return
	}
	if err := p.send(msg); err != nil {
		p.m.sendError.Inc()
		p.log.Error("publish failed", "err", err)
		return
	}
	p.m.published.Inc()
}

// release sends, in order, the held messages a subscription now matches.
func (p *publisher) release(now time.Time) {
	if len(p.held) == 0 || len(p.subs) == 0 {
		return
	}
	kept := p.held[:0]
	for _, h := range p.held {
		if p.wanted(h.msg) {
			p.publish(h.msg, now)
		} else {
			kept = append(kept, h)
		}
	}
	clear(p.held[len(kept):])
	p.held = kept
	p.heldSize.Store(int64(len(p.held)))
}

// expire drops held messages older than holdFor (all of them when before
// is zero) and counts them.
func (p *publisher) expire(now time.Time) {
	n := 0
	for n < len(p.held) && (now.IsZero() || now.Sub(p.held[n].at) > p.holdFor) {
		n++
	}
	if n == 0 {
		return
	}
	p.m.noSubscriber.Add(float64(n))
	p.log.Warn("no subscriber: held messages dropped", "count", n, "held_for", p.holdFor)
	p.held = p.held[n:]
	p.heldSize.Store(int64(len(p.held)))
}

func (p *publisher) send(msg []byte) error {
	if p.topic != nil {
		if _, err := p.sock.SendBytes(p.topic, zmq.SNDMORE); err != nil {
			return err
		}
	}
	_, err := p.sock.SendBytes(msg, 0)
	return err
}

// close stops taking messages and waits for run to send what is queued.
// Handlers must have finished (the HTTP server is shut down first).
func (p *publisher) close() {
	close(p.closing)
	<-p.done
}
