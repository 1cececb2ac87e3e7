package main

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"

	"aggregator/internal/curve"
)

// publisher owns the one long-lived PUB socket. HTTP handlers hand it
// messages through a bounded queue and never wait: a full queue drops the
// message and counts it, so a slow or absent subscriber cannot slow the
// API. (The original bound, slept a second, sent and unbound on every
// request.)
type publisher struct {
	sock   *zmq.Socket
	topic  []byte
	queue  chan []byte
	done   chan struct{}
	log    *slog.Logger
	m      *pubMetrics
	linger time.Duration
	up     atomic.Bool
}

type pubMetrics struct {
	published prometheus.Counter
	queueFull prometheus.Counter
	sendError prometheus.Counter
}

func newPubMetrics(reg prometheus.Registerer, queue func() float64) *pubMetrics {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "downcase_messages_dropped_total",
		Help: "Messages not published, by reason (queue_full: the hand-off queue was full; send_error: libzmq refused the message).",
	}, []string{"reason"})
	m := &pubMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "downcase_messages_published_total",
			Help: "Messages handed to libzmq for publishing.",
		}),
		queueFull: dropped.WithLabelValues("queue_full"),
		sendError: dropped.WithLabelValues("send_error"),
	}
	reg.MustRegister(m.published, dropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "downcase_publish_queue_messages",
		Help: "Messages waiting for the publisher.",
	}, queue))
	return m
}

func newPublisher(zctx *zmq.Context, cfg Config, keys curve.Keys, m *pubMetrics, log *slog.Logger) (_ *publisher, err error) {
	sock, err := zctx.NewSocket(zmq.PUB)
	if err != nil {
		return nil, fmt.Errorf("new socket: %w", err)
	}
	defer func() {
		if err != nil {
			sock.Close()
		}
	}()
	if err := errors.Join(sock.SetSndhwm(cfg.SndHWM), sock.SetLinger(cfg.Linger)); err != nil {
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
		sock:   sock,
		queue:  make(chan []byte, cfg.QueueLength),
		done:   make(chan struct{}),
		log:    log,
		m:      m,
		linger: cfg.Linger,
	}
	if cfg.Topic != "" {
		p.topic = []byte(cfg.Topic)
	}
	p.up.Store(true)
	return p, nil
}

// offer queues msg without waiting; it reports false when it was dropped.
func (p *publisher) offer(msg []byte) bool {
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
func (p *publisher) run() {
	defer close(p.done)
	defer p.sock.Close()
	for msg := range p.queue {
		if err := p.send(msg); err != nil {
			p.m.sendError.Inc()
			p.log.Error("publish failed", "err", err)
			continue
		}
		p.m.published.Inc()
	}
	p.up.Store(false)
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
	close(p.queue)
	<-p.done
}
