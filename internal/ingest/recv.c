// The receive path of internal/ingest (see recv.go): runs of messages
// taken from libzmq in one call from Go, stamped and packed into a batch's
// buffer. Built by cgo with -Wall -Wextra -Werror.

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "recv.h"

// agg_room is the buffer space one message may take, whatever it is.
size_t agg_room(int max_bytes) {
	return AGG_HEADER + AGG_PEER_MAX + (size_t)max_bytes + 4 * AGG_MAX_FRAMES;
}

// agg_recv_batch receives up to max_msgs whole messages without waiting,
// while at least agg_room(max_bytes) bytes are free in buf. Each message
// is packed as:
//
//	int64 receive time (Unix ns) | uint32 packed size | uint16 frames kept |
//	uint8 truncated | uint8 peer length | int32 source descriptor | peer |
//	per frame: uint32 length, bytes
//
// The source descriptor, with want_fd, is the connection the message came
// in on (ZMQ_SRCFD; -1 otherwise): a socket connected to several
// publishers tells them apart by it.
// Payload beyond max_bytes (all frames together) and frames beyond
// AGG_MAX_FRAMES are cut and the message marked truncated. With
// strip_newline, one "\n" or "\r\n" ending the last frame is dropped
// before that: it ends the record, it is not part of it. It returns the
// number of messages, sets *used to the bytes written and *err to the
// errno that ended the run (EAGAIN when the socket is empty; 0 when the
// batch is full).
int agg_recv_batch(void *sock, unsigned char *buf, size_t cap, int max_msgs,
                          int max_bytes, int want_peer, int want_fd, int strip_newline, size_t *used, int *err) {
	size_t off = 0, room = agg_room(max_bytes);
	int n = 0;
	*err = 0;
	while (n < max_msgs && cap - off >= room) {
		zmq_msg_t msg;
		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
			int e = zmq_errno();
			zmq_msg_close(&msg);
			if (e == EINTR)
				continue;
			*err = e;
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;

		unsigned char *rec = buf + off;
		size_t p = AGG_HEADER;
		int32_t fd = want_fd ? zmq_msg_get(&msg, ZMQ_SRCFD) : -1;
		uint8_t peer_len = 0;
		if (want_peer) {
			const char *peer = zmq_msg_gets(&msg, "Peer-Address");
			if (peer) {
				size_t l = strlen(peer);
				if (l > AGG_PEER_MAX)
					l = AGG_PEER_MAX;
				memcpy(rec + p, peer, l);
				peer_len = (uint8_t)l;
				p += l;
			}
		}
		size_t budget = (size_t)max_bytes;
		uint16_t frames = 0;
		uint8_t truncated = 0;
		for (;;) {
			size_t len = zmq_msg_size(&msg);
			int more = zmq_msg_more(&msg);
			if (strip_newline && !more && len > 0) {
				// The newline ends the record: it is not payload, and a
				// message of exactly max_bytes plus its newline is whole.
				const char *d = zmq_msg_data(&msg);
				if (d[len - 1] == '\n') {
					len--;
					if (len > 0 && d[len - 1] == '\r')
						len--;
				}
			}
			if (frames < AGG_MAX_FRAMES && (len <= budget || budget > 0)) {
				size_t keep = len <= budget ? len : budget;
				uint32_t l32 = (uint32_t)keep;
				memcpy(rec + p, &l32, 4);
				if (keep > 0)
					memcpy(rec + p + 4, zmq_msg_data(&msg), keep);
				p += 4 + keep;
				budget -= keep;
				frames++;
				if (keep < len)
					truncated = 1;
			} else {
				truncated = 1;
			}
			zmq_msg_close(&msg);
			if (!more)
				break;
			// The other parts of a multipart message arrived with the first.
			zmq_msg_init(&msg);
			int rc;
			do {
				rc = zmq_msg_recv(&msg, sock, 0);
			} while (rc < 0 && zmq_errno() == EINTR);
			if (rc < 0) {
				zmq_msg_close(&msg);
				break;
			}
		}
		uint32_t size = (uint32_t)p;
		memcpy(rec, &now, 8);
		memcpy(rec + 8, &size, 4);
		memcpy(rec + 12, &frames, 2);
		rec[14] = truncated;
		rec[15] = peer_len;
		memcpy(rec + 16, &fd, 4);
		off += p;
		n++;
	}
	*used = off;
	return n;
}
