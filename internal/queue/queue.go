// Package queue is the bounded hand-off between the inputs (the ZeroMQ
// receive loops, a central's consumer) and the file writer: the records,
// the batches they travel in, and the queue itself.
package queue

import "sync/atomic"

// Record is one received message. A multipart message is one Record.
type Record struct {
	// Endpoint is the configured endpoint the message came in on.
	Endpoint string
	// Time is the wall-clock receive time in Unix nanoseconds. An int64
	// rather than a time.Time keeps a Record small: batches sit in the
	// queue and their size is the daemon's memory bound.
	Time int64
	// Peer is the address libzmq reports for the sending connection
	// (metadata property "Peer-Address"); empty unless Options.WantPeer.
	Peer string
	// Frames are the message parts as received. In a multipart message
	// frame 0 is the topic. Frames of a truncated message are cut so that
	// their total length is the configured maximum.
	Frames [][]byte
	// Truncated is set when the message was longer than the maximum.
	Truncated bool
	// Edge is, on a central, the edge that received the line, and Source
	// the edge's file it was in, without its extension.
	Edge, Source string
}

// Batch is a run of records from one producer: a subscriber's socket, or
// a central's consumer. Batching amortises the channel hand-off and the
// metric updates over many messages; a subscriber closes a batch as soon
// as its socket has nothing more waiting, so batching adds no latency to
// an idle daemon.
type Batch struct {
	Records []Record

	// Raw marks records whose first frame is a finished line (a line a
	// central daemon takes from the stream): the writer writes it as it is.
	Raw bool
	// Durable asks the writer to keep the batch's lines in one file (it
	// rotates first when they would not fit) and to sync the file before
	// Done: the central's group commit, one fdatasync per batch.
	Durable bool
	// Done, when set, is called by the writer's goroutine once the batch's
	// lines are written (and, with Durable, synced) or could not be. A
	// rotation cannot fall between the write and Done, so what Done saves
	// of Written describes the file as it is.
	Done func(Written)
	// Before, when set on a Durable batch, is called by the writer's
	// goroutine once it knows the files the batch goes to, after any
	// rotation and before the first byte is written: what it saves of
	// them is what a crash in the write must be cut back to. An error
	// stops the batch before it is written.
	Before func([]FileAt) error

	// Mem is what a producer keeps with the batch for its records' bytes
	// (the receive loops' packed messages, in C memory): reset when the
	// batch is recycled, released when the queue drops the batch.
	Mem Memory
}

// Memory is a producer's memory that travels with a batch.
type Memory interface {
	Reset()
	Release()
}

// FileAt is a file and its size at a moment: Inode tells a file from
// the one that took its path after a rotation.
type FileAt struct {
	Path  string `json:"path"`
	Inode uint64 `json:"inode"`
	Size  int64  `json:"size"`
}

// Written is what the writer tells a batch's Done: whether its lines are
// written, and the live file's identity and size after them.
type Written struct {
	Err   error
	Inode uint64
	Size  int64
}

// initialRecords is the records a new batch has room for: a receive
// loop's batch holds at most that many.
const initialRecords = 256

func (b *Batch) reset() {
	if cap(b.Records) > initialRecords {
		// A consumer's window: its records array is not kept, or every
		// batch on the free list would come to hold one.
		b.Records = make([]Record, 0, initialRecords)
	} else {
		clear(b.Records) // drop references so a batch holds nothing of the past
		b.Records = b.Records[:0]
	}
	b.Raw = false
	b.Durable = false
	b.Done = nil
	b.Before = nil
	if b.Mem != nil {
		b.Mem.Reset()
	}
}

// Queue is the fixed-size hand-off between the inputs and the writer. The
// writer ranges over C; the daemon closes it once every input has
// returned.
type Queue struct {
	C chan *Batch

	// free holds finished batches for reuse. It is bounded, unlike a
	// sync.Pool, because a batch's buffer is C memory that must be freed
	// when the batch is dropped; at most the queue plus the batches in
	// the subscribers' and the writer's hands are ever out.
	free    chan *Batch
	waiting atomic.Int64 // records sent and not yet taken by the sink
}

// spareBatches is room in the free list for the batches outside the queue.
const spareBatches = 16

// NewQueue makes a queue holding at most length batches.
func NewQueue(length int) *Queue {
	return &Queue{C: make(chan *Batch, length), free: make(chan *Batch, length+spareBatches)}
}

// Get takes an empty batch.
func (q *Queue) Get() *Batch {
	var b *Batch
	select {
	case b = <-q.free:
	default:
		b = &Batch{Records: make([]Record, 0, initialRecords)}
	}
	return b
}

// Send hands b to the sink, waiting while the queue is full. The sink
// takes batches until every producer has returned and C is closed (the
// daemon closes it only then), so a producer never waits in vain, and a
// stopping one still delivers what it received.
func (q *Queue) Send(b *Batch) {
	q.waiting.Add(int64(len(b.Records)))
	q.C <- b
}

// Taken tells the queue the sink has taken b off C.
func (q *Queue) Taken(b *Batch) {
	q.waiting.Add(-int64(len(b.Records)))
}

// Recycle returns a batch the sink has finished with; its records must
// not be used after.
func (q *Queue) Recycle(b *Batch) {
	b.reset()
	select {
	case q.free <- b:
	default:
		if b.Mem != nil {
			b.Mem.Release()
		}
	}
}

// Close frees the memory of the batches kept for reuse, once the writer
// has returned and every batch is back.
func (q *Queue) Close() {
	for {
		select {
		case b := <-q.free:
			if b.Mem != nil {
				b.Mem.Release()
			}
		default:
			return
		}
	}
}

// Waiting is the number of records between the inputs and the writer.
func (q *Queue) Waiting() int64 { return q.waiting.Load() }
