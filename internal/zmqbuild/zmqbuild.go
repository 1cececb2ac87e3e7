// Package zmqbuild tells which libzmq the program is linked with: Debian's
// libzmq5 as it ships, or the build scripts/with-libzmq makes of the same source
// with smaller pipe chunks, which is what keeps a daemon with a thousand
// publishers small.
package zmqbuild

/*
// Defined only in the libzmq scripts/with-libzmq builds; weak, so that a
// program linked with any other libzmq gets a null address instead of a
// link error.
extern const int aggregator_zmq_pipe_granularity __attribute__((weak));

static int pipe_granularity(void) {
	return &aggregator_zmq_pipe_granularity ? aggregator_zmq_pipe_granularity : 0;
}
*/
import "C"

import (
	"fmt"
	"strconv"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
)

// upstreamChunk is libzmq's own message_pipe_granularity, that of every
// build but scripts/with-libzmq's.
const upstreamChunk = 256

// PipeChunk is the number of messages a libzmq pipe allocates room for at
// a time. Each connection keeps two such chunks of 64-byte slots once it
// has carried twice as many messages.
func PipeChunk() int {
	if n := int(C.pipe_granularity()); n > 0 {
		return n
	}
	return upstreamChunk
}

// Version is libzmq's version, such as "4.3.4".
func Version() string {
	major, minor, patch := zmq.Version()
	return fmt.Sprintf("%d.%d.%d", major, minor, patch)
}

// Describe is the version and pipe chunk in words, for -version and logs.
func Describe() string {
	return fmt.Sprintf("libzmq %s with pipe chunks of %d messages", Version(), PipeChunk())
}

// Collector is aggregator_libzmq_info, always 1, labelled with the version
// and pipe chunk, so that a fleet's dashboards show which hosts run a
// binary built without scripts/with-libzmq.
func Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aggregator_libzmq_info",
		Help: "The libzmq linked: its version, and how many messages its pipes allocate room for at a time (256 upstream, 32 as scripts/with-libzmq builds it).",
		ConstLabels: prometheus.Labels{
			"version":    Version(),
			"pipe_chunk": strconv.Itoa(PipeChunk()),
		},
	})
	g.Set(1)
	return g
}
