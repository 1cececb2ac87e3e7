// Package consume is the central side of forwarding: it takes the chunks
// of lines the edges put in a JetStream stream, in order, and writes their
// lines, exactly once, through a SIGKILL or a power cut.
//
// The central's own files are the truth, as Kafka Connect's HDFS sink
// keeps its offsets in its own files. A fetched window of chunks is
// written as one durable batch: the writer rotates first if it would not
// fit in the file, writes it, syncs the file once (group commit), and the
// state saved next to the file (durably: see statefile) records the last
// stream sequence, the file's size after it, and, for each edge, how far
// into which of its files the central holds. Only then are the chunks
// acknowledged. At start, whatever the file holds beyond the saved size was
// never acknowledged and is cut off, and the durable consumer is reset to
// the sequence after the saved one, so what a dead process had fetched
// comes again at once rather than after AckWait. A chunk an edge sends
// again, after any outage and past the stream's duplicate window, is
// recognised by its message ID (edge, file, offset) and not written twice.
//
// One central takes a durable consumer's chunks at a time: the consumer
// pins a client (JetStream's priority group with the pinned_client policy,
// nats-server 2.11+), and any other central on it stands by, fetching and
// getting nothing, until the pinned one stops pulling for pinTTL. The
// central that takes over starts after what the last one acknowledged.
package consume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"aggregator/internal/natsconn"
	"aggregator/internal/queue"
	"aggregator/internal/sink"
	"aggregator/internal/statefile"
	"aggregator/internal/subjects"
)

// Options say what to consume and where the lines go.
type Options struct {
	Server natsconn.Options // the servers and the login
	// Subject and Partitions are the edges' subject prefix and the
	// stream's partitions (AGG_NATS_SUBJECT, AGG_NATS_PARTITIONS).
	Subject    string
	Partitions int
	Stream     string
	Durable    string
	// Partition is the one partition to consume; -1: every chunk.
	Partition int
	Log       string // the live file; the state is kept next to it
	// Routed: Log is a template ({edge}) naming a file per edge; the
	// state is then .central.consumed in its directory.
	Routed bool
	// MaxFileBytes is the writer's file size: a durable batch is kept
	// smaller, so that it always fits in one file.
	MaxFileBytes int64
}

const (
	fetchBatch = 64
	fetchWait  = time.Second
	ackWait    = 30 * time.Second
	retryMax   = 5 * time.Second
	stateName  = ".consumed"
	// moreWait is how long a window waits for chunks after its first:
	// a pinned consumer takes no no-wait fetch (it must name its group).
	moreWait = 5 * time.Millisecond
	// pinGroup and pinTTL: the priority group every central fetches in,
	// and how long the pinned one may go without a fetch before a
	// standby takes over (a central fetches at least every fetchWait).
	pinGroup = "central"
	pinTTL   = 5 * time.Second
	// edgeHistory is how many of each edge file's segments (the file and
	// its last rotations) the state remembers: an edge that sends a
	// segment again after a damaged checkpoint, or after an outage past
	// the stream's duplicate window, is recognised for its last few.
	edgeHistory = 8
	// filesHeld bounds the edge files the state remembers (a file per
	// source on the edges); the one written least recently is forgotten.
	filesHeld = 4096
)

// Metrics are the consumer's instruments.
type Metrics struct {
	Chunks, Lines prometheus.Counter
	Skipped       prometheus.Counter // chunks delivered again that were already written
	Errors        prometheus.Counter
	Rewound       prometheus.Counter // bytes cut at start: written, never acknowledged
	Active        prometheus.Gauge   // 1 while this central holds the consumer's pin
	Takeovers     prometheus.Counter
}

// NewMetrics registers the consumer's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Chunks: prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_chunks_total", Help: "Chunks taken from the stream, written and acknowledged."}),
		Lines:  prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_lines_total", Help: "Lines taken from the stream and written."}),
		Skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_redelivered_total",
			Help: "Chunks delivered again that were already written (after a crash or a lost acknowledgement): acknowledged, not written twice."}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_errors_total", Help: "Failures to fetch, write or acknowledge; each is retried."}),
		Rewound: prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_rewound_bytes_total",
			Help: "Bytes cut from the end of the live file at start: written after the last acknowledged window (before a crash), taken from the stream again."}),
	}
	m.Active = prometheus.NewGauge(prometheus.GaugeOpts{Name: "aggregator_consume_active",
		Help: "1 while this central takes the durable consumer's chunks (holds its pin), 0 while it stands by for another central."})
	m.Takeovers = prometheus.NewCounter(prometheus.CounterOpts{Name: "aggregator_consume_takeovers_total",
		Help: "Times this central was given the consumer's pin (at its start, or from a central that stopped) and resumed after the last acknowledged chunk."})
	reg.MustRegister(m.Chunks, m.Lines, m.Skipped, m.Errors, m.Rewound, m.Active, m.Takeovers)
	return m
}

// Consumer owns the NATS connection of a central daemon.
type Consumer struct {
	opt     Options
	m       *Metrics
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	layout  subjects.Layout
	failure atomic.Pointer[string]
	stateF  string
	st      state       // what is durable: owned by Run
	noReset atomic.Bool // the server has no consumer reset (logged once)

	// Owned by Run: the stream, the pin this process holds ("" while it
	// stands by), and the consumer sequence of the last chunk delivered
	// (0 after a reset: the next is 1), which tells a chunk lost on its
	// way (a fetch that timed out as it was served) from a filter's gap.
	stream    jetstream.Stream
	pin       string
	delivered uint64
	known     bool // delivered is known (the server reset the consumer)
	// regressed: the state is the one saved before the last (the last
	// was damaged), so the consumer's acknowledgements may be ahead of it
	// without another central having written anything.
	regressed bool
	backlog   bool // the last window was full: the next is asked for whole
	resetNext bool // a round failed: the consumer is reset before the next
	started   bool // consumer() has run once: a pin saved before is a dead process's
}

// state is what survives a restart.
type state struct {
	Seq   uint64 `json:"seq"`   // the last stream sequence written
	Size  int64  `json:"size"`  // of the live file after it
	Inode uint64 `json:"inode"` // of the live file Size is of
	// Edges are, for each edge file (the edge, and the file's name when
	// the edge sends it), the segments it sent from most recently (newest
	// last) and the offset in each up to which the lines are held.
	Edges map[string][]held `json:"edges,omitempty"`
	// Stream is when the stream was created: one created again (to change
	// its partitions) numbers its chunks from 1 again.
	Stream string `json:"stream,omitempty"`
	// Pin is the consumer's pin this central was last given: after a
	// crash, a pin still held by the dead process is released at start.
	Pin string `json:"pin,omitempty"`
	// Pending are, with a file per edge, the files a batch is being
	// written to and their sizes before it: saved before its first byte,
	// cleared once it is synced. At start each is cut back to its size.
	Pending []queue.FileAt `json:"pending,omitempty"`
}

type held struct {
	Segment string `json:"segment"`
	End     int64  `json:"end"`
	Seq     uint64 `json:"seq,omitempty"` // the stream sequence that last extended it
}

func (st state) clone() state {
	edges := make(map[string][]held, len(st.Edges))
	for e, h := range st.Edges {
		edges[e] = slices.Clone(h)
	}
	st.Edges = edges
	return st
}

// fresh returns what of a chunk (the bytes of segment from start) the
// central does not hold yet, and notes that it now does. An edge reads
// each file in order, so what it sends again starts before the end held;
// a chunk planned anew after a lost checkpoint may overlap it, and only
// its lines past the end are new.
func (st *state) fresh(key, segment string, start int64, data []byte) []byte {
	hist := st.Edges[key]
	end := start + int64(len(data))
	for i := range hist {
		if hist[i].Segment != segment {
			continue
		}
		switch {
		case end <= hist[i].End:
			return nil
		case start < hist[i].End:
			data = data[hist[i].End-start:]
		}
		hist[i].End, hist[i].Seq = end, st.Seq
		return data
	}
	hist = append(hist, held{segment, end, st.Seq})
	if len(hist) > edgeHistory {
		hist = hist[len(hist)-edgeHistory:]
	}
	if _, known := st.Edges[key]; !known && len(st.Edges) >= filesHeld {
		st.forgetOldest()
	}
	st.Edges[key] = hist
	return data
}

// forgetOldest drops the edge file written least recently.
func (st *state) forgetOldest() {
	oldest, at := "", uint64(0)
	for key, hist := range st.Edges {
		last := uint64(0)
		for _, h := range hist {
			last = max(last, h.Seq)
		}
		if oldest == "" || last < at {
			oldest, at = key, last
		}
	}
	delete(st.Edges, oldest)
}

// heldKey names an edge file in the state: the edge alone for a chunk
// without a source (an edge before sources were sent).
func heldKey(edge, source string) string {
	if source == "" {
		return edge
	}
	return edge + "/" + source
}

// chunkID parses the message ID an edge gives a chunk: edge/segment/offset.
func chunkID(id string) (edge, segment string, start int64, ok bool) {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return "", "", 0, false
	}
	start, err := strconv.ParseInt(parts[2], 10, 64)
	return parts[0], parts[1], start, err == nil && start >= 0
}

// New loads the state, cuts off what the live file holds beyond it, and
// connects (in the background). It runs before the writer opens the file.
func New(opt Options, m *Metrics, log *slog.Logger) (*Consumer, error) {
	stateF := opt.Log + stateName
	if opt.Routed {
		// A value never starts with a dot (route encodes it), so no
		// edge's file can take this name.
		stateF = filepath.Join(filepath.Dir(opt.Log), ".central"+stateName)
	}
	c := &Consumer{opt: opt, m: m, log: log, stateF: stateF,
		layout: subjects.Layout{Prefix: opt.Subject, Partitions: opt.Partitions}}
	from, err := statefile.Load(c.stateF, &c.st)
	if err != nil {
		return nil, fmt.Errorf("consumer state: %w; to take the whole stream again, remove %s and its .prev and empty %s", err, c.stateF, opt.Log)
	}
	if from == statefile.Previous {
		c.regressed = true
		log.Warn("consumer state missing or damaged: resuming from the one saved before it", "file", c.stateF)
	}
	if c.st.Edges == nil {
		c.st.Edges = map[string][]held{}
	}
	if err := c.rewind(); err != nil {
		return nil, err
	}
	if err := c.rewindPending(); err != nil {
		return nil, err
	}
	if c.nc, err = opt.Server.Connect("aggregator central", c.fail); err != nil {
		return nil, err
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// rewind cuts the live file back to the size saved with the last
// acknowledged window: what is beyond was written before a crash and not
// acknowledged, and comes again from the stream. A live file that is not
// the one of the state was started (by a rotation) after the last window,
// so all of it came after.
func (c *Consumer) rewind() error {
	if c.st.Inode == 0 {
		return nil // nothing taken from the stream yet
	}
	f, err := os.OpenFile(c.opt.Log, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	keep := c.st.Size
	if sink.Inode(info) != c.st.Inode {
		keep = 0
	}
	switch {
	case info.Size() > keep:
		if err := f.Truncate(keep); err != nil {
			return fmt.Errorf("cut %s back to the last acknowledged window: %w", c.opt.Log, err)
		}
		if err := f.Sync(); err != nil {
			return err
		}
		c.m.Rewound.Add(float64(info.Size() - keep))
		c.log.Info("cut what was written after the last acknowledged window; it comes again from the stream",
			"file", c.opt.Log, "bytes", info.Size()-keep, "seq", c.st.Seq)
	case info.Size() < keep:
		c.log.Warn("the live file is shorter than when the last window was acknowledged: lines were removed from it since",
			"file", c.opt.Log, "size", info.Size(), "acknowledged", keep)
	}
	return nil
}

// rewindPending cuts each file of a batch that was being written at a
// crash back to its size before the batch: the batch was not
// acknowledged, and comes again from the stream.
func (c *Consumer) rewindPending() error {
	for _, p := range c.st.Pending {
		f, err := os.OpenFile(p.Path, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		info, err := f.Stat()
		switch {
		case err != nil:
		case sink.Inode(info) != p.Inode:
			c.log.Warn("a file the last batch was written to was replaced since; left as it is", "file", p.Path)
		case info.Size() > p.Size:
			if err = f.Truncate(p.Size); err == nil {
				err = f.Sync()
			}
			if err == nil {
				c.m.Rewound.Add(float64(info.Size() - p.Size))
				c.log.Info("cut what was written after the last acknowledged window; it comes again from the stream",
					"file", p.Path, "bytes", info.Size()-p.Size, "seq", c.st.Seq)
			}
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("cut %s back to the last acknowledged window: %w", p.Path, err)
		}
	}
	c.st.Pending = nil
	return nil
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

// errNotPinned: the consumer does not pin one central (a server before
// 2.11, or a consumer changed by hand), so two centrals would both write.
var errNotPinned = errors.New("the durable consumer does not pin one central (it needs nats-server 2.11 or newer, and priority policy pinned_client)")

// errGap: a chunk came after a hole that is not the stream's retention.
var errGap = errors.New("a chunk is missing from the delivery; taking the stream again from it")

// Run consumes until ctx is done, sending lines to q. Failures are retried
// with a back-off; Run returns early only when the state could not be
// saved.
func (c *Consumer) Run(ctx context.Context, q *queue.Queue) error {
	defer c.nc.Close()
	wait := 100 * time.Millisecond
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		var err error
		if cons == nil {
			cons, err = c.consumer(ctx)
		}
		if err == nil && c.resetNext && c.pin != "" {
			// This central holds the pin: nobody else takes chunks, so
			// moving the consumer back is safe.
			err = c.reset(ctx, c.st.Seq+1)
		}
		if err == nil {
			err = c.round(ctx, cons, q)
		}
		if errors.Is(err, errStateNotSaved) {
			return err
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// The same consumer is kept, and with it the pin: what was
			// fetched and not finished comes again after a reset.
			c.resetNext = true
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, errNotPinned) {
				cons = nil
			}
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

// errStateNotSaved: a window is in the file, synced, and its state may or
// may not be on disk. Only a restart, which cuts the file back to the state
// it finds, can tell; writing on would write the window twice.
var errStateNotSaved = errors.New("consumer state not saved after a window was written; the daemon stops so that its restart cuts the file back to the state on disk")

// consumer finds (or creates) the durable consumer of the partition,
// pinned, and, when no other central holds its pin, resets it to the
// sequence after the last one written: what it had delivered and not seen
// acknowledged (by a process that died, or in a round that failed) comes
// again now, in order.
func (c *Consumer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, c.opt.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", c.opt.Stream, err)
	}
	c.stream = s
	info := s.CachedInfo()
	if c.opt.Partition >= 0 || c.layout.Partitions > 0 {
		if err := c.layout.SamePartitions(info.Config); err != nil {
			return nil, err
		}
	}
	if created := info.Created.UTC().Format(time.RFC3339Nano); c.st.Stream != created {
		if c.st.Stream != "" {
			c.log.Warn("the stream was created again since this central last took from it: taking it from its start",
				"stream", c.opt.Stream, "created", created, "last_seq", c.st.Seq)
			c.st.Seq = 0
		}
		c.st.Stream = created
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        c.opt.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubject:  c.layout.Filter(c.opt.Partition),
		AckWait:        ackWait,
		MaxAckPending:  4 * fetchBatch,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{pinGroup},
		PinnedTTL:      pinTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", c.opt.Durable, err)
	}
	if cfg := cons.CachedInfo().Config; cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || cfg.PinnedTTL != pinTTL {
		return nil, errNotPinned
	}
	c.pin = ""
	c.m.Active.Set(0)
	pinned := ""
	for _, g := range cons.CachedInfo().PriorityGroups {
		if g.Group == pinGroup {
			pinned = g.PinnedClientID
		}
	}
	if !c.started && pinned != "" && pinned == c.st.Pin {
		// The pin of this central's previous process, which died: until
		// it is released nobody else takes chunks, so the consumer is
		// moved back to what is written here first (what the dead process
		// fetched comes again now, not after AckWait), then released.
		if err := c.reset(ctx, c.st.Seq+1); err != nil {
			return nil, err
		}
		if err := s.UnpinConsumer(ctx, c.opt.Durable, pinGroup); err != nil {
			return nil, fmt.Errorf("unpin consumer %s: %w", c.opt.Durable, err)
		}
	}
	c.started = true
	return cons, nil
}

// reset moves the durable consumer to seq: what it had delivered and not
// seen acknowledged comes again now, in order.
func (c *Consumer) reset(ctx context.Context, seq uint64) error {
	_, err := c.stream.ResetConsumerToSequence(ctx, c.opt.Durable, seq)
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		c.delivered, c.known, c.resetNext = 0, true, false
	case errors.As(err, &apiErr) && apiErr.Code == 400 && c.opt.Partition < 0:
		// A server without the reset: what a killed central had fetched
		// comes again after AckWait instead, and the stream sequence
		// tells a chunk missing from the delivery (without a filter,
		// every sequence is this central's).
		c.known, c.resetNext = false, false
		if !c.noReset.Swap(true) {
			c.log.Warn("the NATS server cannot reset a consumer: after a crash, what was fetched comes again after AckWait", "ack_wait", ackWait, "err", err)
		}
	default:
		return fmt.Errorf("reset consumer %s to sequence %d: %w", c.opt.Durable, seq, err)
	}
	return nil
}

// takeOver is called when the consumer gives this central its pin: it
// resumes after what is written here or, when another central has
// acknowledged more (it held the pin before), after that.
func (c *Consumer) takeOver(ctx context.Context, cons jetstream.Consumer, pin string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", c.opt.Durable, err)
	}
	from := c.st.Seq
	// The state is saved before a chunk is acknowledged, so what is
	// acknowledged beyond it was written by another central, unless the
	// state fell back to the one before it.
	if floor := info.AckFloor.Stream; floor > from && !c.regressed {
		c.log.Info("taking over from another central: resuming after what it acknowledged",
			"consumer", c.opt.Durable, "acknowledged", floor, "written_here", c.st.Seq)
		from = floor
	}
	c.regressed = false
	if err := c.reset(ctx, from+1); err != nil {
		return err
	}
	// Saved at once: a crash before the next window then finds its pin
	// to release, and a sequence taken over is not taken again.
	st := c.st.clone()
	st.Seq, st.Pin = from, pin
	if err := statefile.Save(c.stateF, st); err != nil {
		return fmt.Errorf("save consumer state: %w", err)
	}
	c.st, c.pin = st, pin
	c.m.Active.Set(1)
	c.m.Takeovers.Inc()
	c.log.Info("taking the consumer's chunks", "consumer", c.opt.Durable, "from_seq", from+1)
	return nil
}

// standBy notes that another central holds the pin (this one stalled
// past pinTTL): it resumes after what this one acknowledged.
func (c *Consumer) standBy() {
	if c.pin != "" {
		c.log.Warn("another central took the consumer's chunks over; standing by", "consumer", c.opt.Durable)
	}
	c.pin = ""
	c.m.Active.Set(0)
}

// errStoodBy: a round found its pin gone before it wrote its window.
var errStoodBy = errors.New("another central took the consumer's chunks over before this window was written")

// stillPinned asks the server whether this central holds the pin.
func (c *Consumer) stillPinned(ctx context.Context, cons jetstream.Consumer) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		return false, err
	}
	for _, g := range info.PriorityGroups {
		if g.Group == pinGroup {
			return g.PinnedClientID == c.pin && c.pin != "", nil
		}
	}
	return false, nil
}

func nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		m.Nak()
	}
}

// round fetches a window of chunks and writes what is new in it as durable
// batches, each saving the state once synced; then it acknowledges the
// window. Any early return first hands back (Nak) what it fetched and did
// not finish.
func (c *Consumer) round(ctx context.Context, cons jetstream.Consumer, q *queue.Queue) (err error) {
	msgs, err := fetchWindow(cons, c.backlog)
	fetched := time.Now()
	c.backlog = len(msgs) == fetchBatch
	if errors.Is(err, jetstream.ErrPinIDMismatch) {
		nakAll(msgs)
		c.standBy()
		return nil
	}
	if len(msgs) > 0 {
		switch pin := msgs[0].Headers().Get("Nats-Pin-Id"); {
		case pin == "":
			nakAll(msgs)
			return errNotPinned
		case pin != c.pin:
			// Newly pinned: the window may start anywhere (after what a
			// dead central had fetched); it comes again after the reset.
			nakAll(msgs)
			return c.takeOver(ctx, cons, pin)
		}
	}
	acked := 0
	defer func() {
		if err != nil {
			for _, m := range msgs[acked:] {
				m.Nak()
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if len(msgs) == 0 {
		return ctx.Err()
	}

	// Plan: the window's new lines, in durable batches that each fit in
	// a file, and the state each leaves.
	type write struct {
		records []queue.Record
		bytes   int
		after   state
	}
	next := c.st.clone()
	var writes []write
	var cur write
	limit := max(c.opt.MaxFileBytes/2, 1)
	var gap error
	for i, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		seq, d := meta.Sequence.Stream, meta.Sequence.Consumer
		if c.known && d != c.delivered+1 {
			// A delivery this central never saw (its fetch ended as it was
			// served): it would come after AckWait, out of order.
			for _, later := range msgs[i:] {
				later.Nak()
			}
			msgs, gap = msgs[:i], errGap
			break
		}
		c.delivered, c.known = d, true
		if seq <= next.Seq {
			c.m.Skipped.Inc() // written before; its acknowledgement was lost
			continue
		}
		if seq != next.Seq+1 && c.opt.Partition < 0 && !c.gapIsRetention(ctx, next.Seq+1) {
			// Without a filter every sequence is this central's: one
			// missing is pending elsewhere (a dead process's window, on
			// a server that could not reset the consumer).
			for _, later := range msgs[i:] {
				later.Nak()
			}
			msgs, gap = msgs[:i], errGap
			break
		}
		data, edge := m.Data(), m.Headers().Get("Aggregator-Edge")
		file := m.Headers().Get("Aggregator-Source")
		source := strings.TrimSuffix(file, filepath.Ext(file))
		// A batch that would grow past the limit is closed before this
		// chunk is taken into the state: the state it leaves must not
		// claim the chunk. The bound is what annotate can add a line.
		if bound := len(data) + bytes.Count(data, []byte{'\n'})*(len(edge)+12); cur.bytes > 0 && int64(cur.bytes+bound) > limit {
			cur.after = next.clone()
			writes = append(writes, cur)
			cur = write{}
		}
		next.Seq = seq
		if edgeID, segment, start, ok := chunkID(m.Headers().Get(jetstream.MsgIDHeader)); ok {
			if data = next.fresh(heldKey(edgeID, file), segment, start, data); len(data) == 0 {
				c.m.Skipped.Inc() // sent again by its edge
				continue
			}
		}
		out := annotate(data, edge)
		for line := range bytes.Lines(out) {
			cur.records = append(cur.records, queue.Record{Frames: [][]byte{line[:len(line)-1]}, Edge: edge, Source: source})
			cur.bytes += len(line)
		}
	}
	if next.Seq != c.st.Seq { // else all of it was written before: only acknowledged
		cur.after = next
		writes = append(writes, cur) // even without lines: the sequence is saved
	}

	// Write: one batch at a time, each durable and its state saved by the
	// writer's goroutine before the next can be rotated past.
	done := make(chan error, 1)
	for _, w := range writes {
		if time.Since(fetched) > pinTTL/2 {
			// A slow round (a full queue, a slow disk): the pin may have
			// gone to a standby, which then writes this window itself.
			if still, err := c.stillPinned(ctx, cons); err != nil || !still {
				if err == nil {
					c.standBy()
					err = errStoodBy
				}
				return err
			}
			fetched = time.Now()
		}
		b := q.Get()
		b.Raw, b.Durable = true, true
		b.Records = w.records // the window's own array (Recycle does not keep it)
		after := w.after
		if c.opt.Routed {
			before := c.st.clone()
			b.Before = func(files []queue.FileAt) error {
				before.Pending = files
				if err := statefile.Save(c.stateF, before); err != nil {
					return fmt.Errorf("save consumer state: %w", err)
				}
				return nil
			}
		}
		b.Done = func(res queue.Written) {
			err := res.Err
			if err == nil {
				after.Size, after.Inode = res.Size, res.Inode
				if err = statefile.Save(c.stateF, after); err != nil {
					err = fmt.Errorf("%w: %v", errStateNotSaved, err)
				}
			}
			done <- err
		}
		c.m.Lines.Add(float64(len(w.records)))
		// The writer calls Done for every batch it takes, and takes them
		// until this input has returned.
		q.Send(b)
		if err := <-done; err != nil {
			return fmt.Errorf("write: %w", err)
		}
		c.st = after
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			return fmt.Errorf("ack: %w", err) // delivered again, then skipped by its sequence
		}
		acked++
		c.m.Chunks.Inc()
	}
	return gap
}

// fetchWindow takes a window: what the stream holds for the consumer now,
// up to fetchBatch chunks, without waiting for a full window (a backlog's
// last window would otherwise wait fetchWait for chunks that never come).
// When nothing is there it waits up to fetchWait for the first chunk, so a
// quiet stream's lines are written as soon as they arrive. After a full
// window (a backlog) it asks for a whole window at once. Every fetch names
// the priority group, which keeps this central's pin.
func fetchWindow(cons jetstream.Consumer, backlog bool) ([]jetstream.Msg, error) {
	group := jetstream.FetchPriorityGroup(pinGroup)
	var msgs []jetstream.Msg
	if !backlog {
		first, err := take(cons.Fetch(1, jetstream.FetchMaxWait(fetchWait), group))
		if err != nil || len(first) == 0 {
			return first, err
		}
		msgs = first
	}
	more, err := take(cons.Fetch(fetchBatch-len(msgs), jetstream.FetchMaxWait(moreWait), group))
	return append(msgs, more...), err
}

// take collects a fetch's messages; a fetch that ended by its time limit
// is no error.
func take(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return msgs, err
	}
	return msgs, nil
}

// gapIsRetention reports whether the stream no longer holds seq (its
// limits removed it): a gap the consumer can never fill, logged and
// passed over.
func (c *Consumer) gapIsRetention(ctx context.Context, seq uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := c.stream.Info(ctx)
	if err != nil || info.State.FirstSeq <= seq {
		return false
	}
	c.m.Errors.Inc()
	c.log.Error("chunks removed from the stream before they were written", "from", seq, "to", info.State.FirstSeq-1)
	return true
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
