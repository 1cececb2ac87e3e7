// Package ingest receives messages from ZeroMQ publishers and hands them,
// stamped with their receive time, to the writer in bounded batches
// (package queue).
package ingest

import "aggregator/internal/queue"

// Batch limits of the subscribers: a batch is handed on when it holds
// maxBatchRecords records or its buffer (batchBufBytes plus room for one
// message of the maximum size) cannot take another message. Together with
// the queue length they bound the memory between the sockets and the
// sink. A central's consumer hands on a fetched window at a time instead,
// one batch of records pointing into the messages it fetched (see
// consume), and waits for it to be written before it takes the next.
const (
	maxBatchRecords = 256
	batchBufBytes   = 32 << 10
)

// packed is a receive loop's memory of a batch: the packed messages its
// records' frames point into (C memory, see recv.go and recv.c).
type packed struct {
	buf    []byte
	frames [][]byte // backing array for the records' Frames
	closed bool     // buf has no room for another message
}

func (p *packed) Reset() {
	clear(p.frames)
	p.frames = p.frames[:0]
	p.buf = p.buf[:0]
	p.closed = false
}

// packedOf is b's packed memory, made when b has none yet.
func packedOf(b *queue.Batch) *packed {
	p, ok := b.Mem.(*packed)
	if !ok {
		p = &packed{frames: make([][]byte, 0, maxBatchRecords)}
		b.Mem = p
	}
	return p
}

// full reports whether b takes no more messages.
func full(b *queue.Batch) bool {
	return len(b.Records) >= maxBatchRecords || packedOf(b).closed
}
