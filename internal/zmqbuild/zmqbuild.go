// Package zmqbuild tells which libzmq the program runs with: its version and
// the shared library file it was loaded from. The binaries link Debian's
// libzmq5, so that apt's security updates reach them (needrestart restarts
// what still maps the old file); the file names which one a process has.
package zmqbuild

/*
#define _GNU_SOURCE
#include <dlfcn.h>
#include <zmq.h>

// The file the dynamic linker loaded zmq_version from, or null when libzmq
// is linked into the binary itself.
static const char *agg_zmq_file(void) {
	Dl_info info;
	if (dladdr((void *)zmq_version, &info) == 0) {
		return 0;
	}
	return info.dli_fname;
}
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
)

// Version is libzmq's version, such as "4.3.4".
func Version() string {
	major, minor, patch := zmq.Version()
	return fmt.Sprintf("%d.%d.%d", major, minor, patch)
}

// File is the shared library libzmq was loaded from, with symbolic links
// resolved (such as /usr/lib/x86_64-linux-gnu/libzmq.so.5.2.4), or
// "static" when it is part of the executable.
func File() string {
	p := C.agg_zmq_file()
	if p == nil {
		return "static"
	}
	name := C.GoString(p)
	if exe, err := os.Executable(); err == nil && sameFile(exe, name) {
		return "static"
	}
	if real, err := filepath.EvalSymlinks(name); err == nil {
		return real
	}
	return name
}

func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// Describe is the version and file in words, for -version and logs.
func Describe() string {
	return fmt.Sprintf("libzmq %s from %s", Version(), File())
}

// Collector is aggregator_libzmq_info, always 1, labelled with libzmq's
// version and file, so that a fleet's dashboards show which hosts still
// run a library apt has since replaced.
func Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aggregator_libzmq_info",
		Help: "The libzmq the process runs with: its version, and the shared library file it was loaded from.",
		ConstLabels: prometheus.Labels{
			"version": Version(),
			"file":    File(),
		},
	})
	g.Set(1)
	return g
}
