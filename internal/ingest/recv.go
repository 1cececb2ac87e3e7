package ingest

// The receive path takes whole runs of messages from libzmq in one cgo
// call. pebbe/zmq4's RecvBytes costs a cgo call and a Go allocation per
// frame, plus another cgo call per message to ask ZMQ_RCVMORE; at a
// million messages a second those calls and the garbage were most of the
// daemon's CPU and memory (docs/performance.md). Here C
// receives up to a batch of messages without blocking, stamps each with
// clock_gettime, and packs them into the batch's buffer; Go slices the
// frames out of it without copying. Sockets are still created, configured,
// polled and closed through pebbe/zmq4.

/*
#cgo !windows pkg-config: libzmq
#cgo CFLAGS: -Wall -Wextra -Werror
#include <stdlib.h>
#include "recv.h"
*/
import "C"

import (
	"encoding/binary"
	"reflect"
	"syscall"
	"unsafe"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/queue"
)

// roomFor is the buffer space one message can take at most.
func roomFor(maxBytes int) int { return int(C.agg_room(C.int(maxBytes))) }

// rawSocket is libzmq's handle behind a pebbe socket, which pebbe keeps
// unexported. The field name is pinned by go.mod's version of pebbe/zmq4;
// TestRawSocket fails loudly if it ever changes.
func rawSocket(s *zmq.Socket) unsafe.Pointer {
	return reflect.ValueOf(s).Elem().FieldByName("soc").UnsafePointer()
}

// receiver packs messages from one socket into batches. Owned by the
// subscriber's loop.
type receiver struct {
	sock     unsafe.Pointer
	src      *sources // which endpoint each message came in on
	maxBytes int
	room     int
	wantPeer bool
	strip    bool              // drop one trailing newline of each message
	peers    map[string]string // interned peer addresses: one string per connection, not per message
}

func newReceiver(s *zmq.Socket, src *sources, maxBytes int, wantPeer, strip bool) *receiver {
	return &receiver{
		sock:     rawSocket(s),
		src:      src,
		maxBytes: maxBytes,
		room:     roomFor(maxBytes),
		wantPeer: wantPeer,
		strip:    strip,
		peers:    map[string]string{},
	}
}

// fill receives what the socket holds into b, up to b's limits, and
// returns the errno that stopped it: EAGAIN when the socket is empty, 0
// when b is full.
func (r *receiver) fill(b *queue.Batch) syscall.Errno {
	if r.src.perMessage() && r.src.eventsWaiting() {
		// Connections reported since the loop last read the monitor are
		// known before their messages are attributed (see sources).
		r.src.refresh()
	}
	mark := r.src.closingMark()
	errno := r.take(b)
	if errno == syscall.EAGAIN {
		r.src.emptied(mark)
	}
	return errno
}

func (r *receiver) take(b *queue.Batch) syscall.Errno {
	pk := packedOf(b)
	if cap(pk.buf) < batchBufBytes+r.room && len(b.Records) == 0 {
		pk.Release()
		if pk.buf = cBuffer(batchBufBytes + r.room); pk.buf == nil {
			return syscall.ENOMEM
		}
	}
	for !full(b) {
		free := pk.buf[len(pk.buf):cap(pk.buf)]
		if len(free) < r.room {
			pk.closed = true
			return 0
		}
		var used C.size_t
		var errno C.int
		n := C.agg_recv_batch(r.sock, (*C.uchar)(unsafe.Pointer(&free[0])), C.size_t(len(free)),
			C.int(maxBatchRecords-len(b.Records)), C.int(r.maxBytes), C.int(boolInt(r.wantPeer)), C.int(boolInt(r.src.perMessage())),
			C.int(boolInt(r.strip)), &used, &errno)
		r.unpack(b, pk, free[:used], int(n))
		pk.buf = pk.buf[:len(pk.buf)+int(used)]
		if errno != 0 {
			return syscall.Errno(errno)
		}
	}
	return 0
}

// unpack appends n packed messages from data to b's records, and counts
// each for the endpoint it came in on. The frames point into pk's buffer,
// which stays untouched until the batch is recycled.
func (r *receiver) unpack(b *queue.Batch, pk *packed, data []byte, n int) {
	ne := binary.NativeEndian
	for range n {
		size := int(ne.Uint32(data[8:]))
		ep := r.src.of(int32(ne.Uint32(data[16:])))
		rec := queue.Record{
			Endpoint:  ep.name,
			Time:      int64(ne.Uint64(data)),
			Truncated: data[14] != 0,
		}
		frames, peerLen := int(ne.Uint16(data[12:])), int(data[15])
		p := int(C.AGG_HEADER)
		if peerLen > 0 {
			rec.Peer = r.peer(data[p : p+peerLen])
			p += peerLen
		}
		start, payload := len(pk.frames), 0 // payload: for the endpoint's byte count
		for range frames {
			l := int(ne.Uint32(data[p:]))
			pk.frames = append(pk.frames, data[p+4:p+4+l:p+4+l])
			payload += l
			p += 4 + l
		}
		rec.Frames = pk.frames[start:len(pk.frames):len(pk.frames)]
		r.src.count(ep, payload, rec.Truncated)
		b.Records = append(b.Records, rec)
		data = data[size:]
	}
}

func (r *receiver) peer(b []byte) string {
	if s, ok := r.peers[string(b)]; ok {
		return s
	}
	if len(r.peers) > 4096 { // bounded: peers come and go
		clear(r.peers)
	}
	s := string(b)
	r.peers[s] = s
	return s
}

// cBuffer allocates a batch buffer with malloc. Unlike make, malloc does
// not write to the memory, so the pages kept in reserve for a message of
// the maximum size take no RAM until a message needs them. The buffer
// holds no Go pointers; packed.Release frees it. nil means out of memory.
func cBuffer(n int) []byte {
	p := C.malloc(C.size_t(n))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)[:0]
}

// Release frees the buffer.
func (p *packed) Release() {
	if cap(p.buf) > 0 {
		C.free(unsafe.Pointer(unsafe.SliceData(p.buf[:1])))
	}
	p.buf = nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
