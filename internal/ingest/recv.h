// The receive path of internal/ingest: see recv.c and recv.go.
#ifndef AGGREGATOR_RECV_H
#define AGGREGATOR_RECV_H

#include <stddef.h>

enum { AGG_HEADER = 20, AGG_PEER_MAX = 64, AGG_MAX_FRAMES = 64 };

// agg_room is the buffer space one message may take, whatever it is.
size_t agg_room(int max_bytes);

// agg_recv_batch receives up to max_msgs whole messages without waiting
// (see recv.c).
int agg_recv_batch(void *sock, unsigned char *buf, size_t cap, int max_msgs,
                   int max_bytes, int want_peer, int want_fd, int strip_newline, size_t *used, int *err);

#endif
