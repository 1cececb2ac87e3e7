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
	"strconv"
	"strings"
	"syscall"

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

// Collectors are aggregator_libzmq_info, always 1, labelled with libzmq's
// version and file, and aggregator_libzmq_replaced, 1 once the file on
// disk is no longer the one the process mapped: apt installed an update
// (a Debian security fix keeps the file name and often the version), and
// only a restart loads it.
func Collectors() []prometheus.Collector {
	file := File()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aggregator_libzmq_info",
		Help: "The libzmq the process runs with: its version, and the shared library file it was loaded from.",
		ConstLabels: prometheus.Labels{
			"version": Version(),
			"file":    file,
		},
	})
	info.Set(1)
	ino, mapped := mappedInode(file)
	replaced := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aggregator_libzmq_replaced",
		Help: "1 once the libzmq file on disk is no longer the one this process runs (an update was installed: restart to load it), 0 otherwise.",
	}, func() float64 {
		if mapped && replacedSince(file, ino) {
			return 1
		}
		return 0
	})
	return []prometheus.Collector{info, replaced}
}

// mappedInode is the inode of the file at path as this process mapped it,
// from /proc/self/maps.
func mappedInode(path string) (uint64, bool) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(maps)) {
		// address perms offset dev inode path
		f := strings.Fields(line)
		if len(f) >= 6 && f[5] == path {
			ino, err := strconv.ParseUint(f[4], 10, 64)
			return ino, err == nil
		}
	}
	return 0, false
}

// replacedSince reports whether path no longer names the file of inode
// ino: a package upgrade writes a new file and renames it over the old.
func replacedSince(path string, ino uint64) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return true
	}
	return st.Ino != ino
}
