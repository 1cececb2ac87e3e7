package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestSendReachesTheSocket(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := filepath.Join(t.TempDir(), "notify.sock")
		listen, given := name, name
		if abstract {
			listen = "\x00aggregator-test-" + strconv.Itoa(os.Getpid())
			given = "@" + listen[1:]
		}
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		n := New(env(map[string]string{"NOTIFY_SOCKET": given}))
		if !n.Enabled() {
			t.Fatal("not enabled with NOTIFY_SOCKET set")
		}
		if err := n.Send(Ready); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		k, err := conn.Read(buf)
		conn.Close()
		if err != nil || string(buf[:k]) != "READY=1" {
			t.Fatalf("abstract=%v: got %q, %v", abstract, buf[:k], err)
		}
	}
}

func TestWithoutSystemdEverythingIsANoOp(t *testing.T) {
	n := New(env(nil))
	if n.Enabled() || n.Send(Ready) != nil {
		t.Fatal("a notifier without NOTIFY_SOCKET should do nothing")
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name string
		env  map[string]string
		want time.Duration
	}{
		{"unset", nil, 0},
		{"half of the timeout", map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second},
		{"for us", map[string]string{"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}, time.Second},
		{"for another process", map[string]string{"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, 0},
		{"garbage", map[string]string{"WATCHDOG_USEC": "soon"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WatchdogInterval(env(tt.env)); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}
