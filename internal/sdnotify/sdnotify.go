// Package sdnotify speaks systemd's service notification protocol: one
// datagram of newline-separated KEY=VALUE assignments to $NOTIFY_SOCKET.
// It is a few lines, so no library: see sd_notify(3).
package sdnotify

import (
	"net"
	"os"
	"strconv"
	"time"
)

// Messages the daemon sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notifier sends to the socket named in NOTIFY_SOCKET when it was created;
// without one, every call is a no-op, so the daemon runs the same outside
// systemd.
type Notifier struct {
	addr *net.UnixAddr
}

// New reads the environment through getenv.
func New(getenv func(string) string) *Notifier {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return &Notifier{}
	}
	if path[0] == '@' { // abstract socket namespace
		path = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Enabled reports whether a notification socket is set.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// Send sends state, e.g. Ready or "STATUS=...".
func (n *Notifier) Send(state string) error {
	if n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// WatchdogInterval is how often to send Watchdog: half the WATCHDOG_USEC
// systemd set, as sd_watchdog_enabled(3) advises. It is 0 when no
// watchdog is asked for, or when it is meant for another process.
func WatchdogInterval(getenv func(string) string) time.Duration {
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
