// Package consume is the central side of forwarding: it takes the chunks
// of lines the edges put in a JetStream stream, in order, and hands their
// lines to the writer, acknowledging each chunk only once its lines are in
// the file. The last stream sequence written is kept next to the file, so
// a chunk delivered again after a crash or a restart is not written twice.
package consume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"aggregator/internal/forward"
	"aggregator/internal/ingest"
)

// Options say what to consume and where the lines go.
type Options struct {
	Conn    forward.Options // servers and credentials
	Stream  string
	Durable string
	Log     string // the live file; the state is kept next to it
}

const (
	fetchBatch = 64
	fetchWait  = time.Second
	ackWait    = 30 * time.Second
	retryMax   = 5 * time.Second
	stateName  = ".consumed"
)

// Metrics are the consumer's instruments.
type Metrics struct {
	Chunks, Lines prometheus.Counter
	Skipped       prometheus.Counter // chunks delivered again that were already written
	Errors        prometheus.Counter
}

// NewMetrics registers the consumer's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Chunks: prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_chunks_total", Help: "Chunks taken from the stream, written and acknowledged."}),
		Lines:  prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_lines_total", Help: "Lines taken from the stream and written."}),
		Skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_redelivered_total",
			Help: "Chunks delivered again that were already written (after a crash or a lost acknowledgement): acknowledged, not written twice."}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_errors_total", Help: "Failures to fetch, write or acknowledge; each is retried."}),
	}
	reg.MustRegister(m.Chunks, m.Lines, m.Skipped, m.Errors)
	return m
}

// Consumer owns the NATS connection of a central daemon.
type Consumer struct {
	opt     Options
	m       *Metrics
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	failure atomic.Pointer[string]
	stateF  string
}

// state is what survives a restart: the last stream sequence written and
// the size of the live file after it.
type state struct {
	Seq   uint64 `json:"seq"`
	Size  int64  `json:"size"`
	Inode uint64 `json:"inode"` // of the live file Size is of: a rotation since makes Size meaningless
}

// New connects (in the background) and returns the consumer.
func New(opt Options, m *Metrics, log *slog.Logger) (*Consumer, error) {
	c := &Consumer{opt: opt, m: m, log: log, stateF: opt.Log + stateName}
	var err error
	if c.nc, err = opt.Conn.Connect("aggregator central", c.fail); err != nil {
		return nil, err
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection of a consumer that was never run.
func (c *Consumer) Close() { c.nc.Close() }

// Ready is nil while consuming works.
func (c *Consumer) Ready() error {
	if p := c.failure.Load(); p != nil {
		return errors.New(*p)
	}
	if !c.nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	return nil
}

func (c *Consumer) fail(err error) {
	msg := err.Error()
	if old := c.failure.Swap(&msg); old == nil || *old != msg {
		c.log.Warn("consuming fails", "err", err)
	}
}

// Run consumes until ctx is done, sending lines to q. abort is closed when
// the writer has failed.
func (c *Consumer) Run(ctx context.Context, q *ingest.Queue, abort <-chan struct{}) error {
	defer c.nc.Close()
	st, err := c.load()
	if err != nil {
		return err
	}
	pending := c.unacknowledgedTail(st)
	wait := 100 * time.Millisecond
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		if cons == nil {
			cons, err = c.consumer(ctx)
		}
		if err == nil {
			err = c.round(ctx, cons, q, abort, &st, &pending)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			cons = nil
			c.fail(err)
			c.m.Errors.Inc()
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, retryMax)
			continue
		}
		wait = 100 * time.Millisecond
		if c.failure.Swap(nil) != nil {
			c.log.Info("consuming again")
		}
	}
	return nil
}

func (c *Consumer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, c.opt.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", c.opt.Stream, err)
	}
	return s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       c.opt.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       ackWait,
		MaxAckPending: 4 * fetchBatch,
	})
}

// round fetches up to a batch of chunks, writes the new ones in stream
// order, waits for the writer, saves the sequence and acknowledges. Any
// early return first hands back (Nak) what it fetched and did not finish,
// so that it comes again at once, in order, rather than after AckWait
// while later chunks overtake it.
func (c *Consumer) round(ctx context.Context, cons jetstream.Consumer, q *ingest.Queue, abort <-chan struct{}, st *state, pending *[]byte) (err error) {
	batch, err := cons.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	acked := 0
	defer func() {
		if err != nil {
			for _, m := range msgs[acked:] {
				m.Nak()
			}
		}
	}()
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("fetch: %w", err)
	}
	if len(msgs) == 0 {
		return ctx.Err()
	}
	done := make(chan error, len(msgs))
	writing, last := 0, st.Seq
	for i, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		seq := meta.Sequence.Stream
		if seq <= last {
			c.m.Skipped.Inc() // written before its acknowledgement was lost
			continue
		}
		if last > 0 && seq != last+1 && !c.gapIsRetention(ctx, last+1) {
			// An earlier chunk is still out (delivered, not acknowledged):
			// take it first. What is fetched from here on comes again.
			for _, later := range msgs[i:] {
				later.Nak()
			}
			msgs = msgs[:i]
			break
		}
		last = seq
		out := annotate(m.Data(), m.Headers().Get("Aggregator-Edge"))
		if len(*pending) > 0 && bytes.HasPrefix(*pending, out) {
			// Written just before a crash or a failed write, not yet acknowledged.
			*pending = (*pending)[len(out):]
			c.m.Skipped.Inc()
			continue
		}
		*pending = nil
		b := q.Get()
		b.Raw = true
		b.Done = func(err error) { done <- err }
		for line := range bytes.Lines(out) {
			b.Records = append(b.Records, ingest.Record{Frames: [][]byte{line[:len(line)-1]}})
			b.Bytes += len(line) - 1
		}
		c.m.Lines.Add(float64(len(b.Records)))
		if !q.Send(b, abort) {
			return errors.New("the writer has stopped")
		}
		writing++
	}
	var writeErr error
	for range writing { // every result, so that nothing is still being written
		if err := <-done; err != nil && writeErr == nil {
			writeErr = err
		}
	}
	if writeErr != nil {
		// Some chunks may be in the file, one may be cut: the tail beyond
		// the saved size tells which when they come again.
		*pending = c.unacknowledgedTail(*st)
		return fmt.Errorf("write: %w", writeErr)
	}
	if last != st.Seq {
		st.Seq = last
		if info, err := os.Stat(c.opt.Log); err == nil {
			st.Size, st.Inode = info.Size(), inode(info)
		}
		if err := c.save(*st); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			return fmt.Errorf("ack: %w", err) // delivered again, then skipped by its sequence
		}
		acked++
		c.m.Chunks.Inc()
	}
	return nil
}

// gapIsRetention reports whether the stream no longer holds seq (its
// limits removed it): a gap the consumer can never fill, logged and
// passed over.
func (c *Consumer) gapIsRetention(ctx context.Context, seq uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, c.opt.Stream)
	if err != nil {
		return false
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.FirstSeq <= seq {
		return false
	}
	c.m.Errors.Inc()
	c.log.Error("chunks removed from the stream before they were written", "from", seq, "to", info.State.FirstSeq-1)
	return true
}

func inode(info os.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// annotate adds the edge's name to each line of a chunk: a JSON line gets
// an "edge" field first, a text line the name after its time.
func annotate(chunk []byte, edge string) []byte {
	if edge == "" {
		edge = "-"
	}
	name, _ := json.Marshal(edge)
	out := make([]byte, 0, len(chunk)+bytes.Count(chunk, []byte{'\n'})*(len(edge)+10))
	for line := range bytes.Lines(chunk) {
		switch {
		case len(line) > 1 && line[0] == '{':
			out = append(out, `{"edge":`...)
			out = append(out, name...)
			if line[1] != '}' {
				out = append(out, ',')
			}
			out = append(out, line[1:]...)
		default:
			if i := bytes.IndexByte(line, ' '); i > 0 {
				out = append(out, line[:i+1]...)
				out = append(out, edge...)
				out = append(out, ' ')
				out = append(out, line[i+1:]...)
			} else {
				out = append(out, line...)
			}
		}
	}
	return out
}

// unacknowledgedTail is what the live file holds beyond the size saved
// with the last sequence: lines written for chunks whose acknowledgement
// a crash prevented. Chunks delivered again are compared with it.
func (c *Consumer) unacknowledgedTail(st state) []byte {
	f, err := os.Open(c.opt.Log)
	if err != nil {
		return nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || inode(info) != st.Inode || info.Size() <= st.Size || info.Size()-st.Size > 64<<20 {
		return nil
	}
	tail := make([]byte, info.Size()-st.Size)
	if _, err := f.ReadAt(tail, st.Size); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return tail
}

func (c *Consumer) load() (state, error) {
	var st state
	err := forward.LoadState(c.stateF, &st)
	return st, err
}

func (c *Consumer) save(st state) error { return forward.SaveState(c.stateF, st) }
