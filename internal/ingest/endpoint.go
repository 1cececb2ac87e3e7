package ingest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// CheckEndpoint reports whether s is an endpoint the daemon can use:
// tcp://host:port or ipc://path (inproc:// is accepted too, for tests and
// embedding). For bind endpoints the host may be "*" and the port may be
// "*" (libzmq picks a free one). The error says what is wrong in words a
// user can act on.
func CheckEndpoint(s string, bind bool) error {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return fmt.Errorf("%q: want tcp://host:port or ipc://path", s)
	}
	switch scheme {
	case "tcp":
		return checkTCP(s, rest, bind)
	case "ipc", "inproc":
		if rest == "" {
			return fmt.Errorf("%q: empty %s path", s, scheme)
		}
		if strings.ContainsRune(rest, 0) {
			return fmt.Errorf("%q: NUL byte in path", s)
		}
		return nil
	default:
		return fmt.Errorf("%q: unsupported transport %q (want tcp or ipc)", s, scheme)
	}
}

func checkTCP(s, hostport string, bind bool) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: want tcp://host:port: %v", s, err)
	}
	if host == "" {
		return fmt.Errorf("%q: missing host (use * to bind every interface)", s)
	}
	if host == "*" && !bind {
		return fmt.Errorf("%q: cannot connect to host *", s)
	}
	if strings.ContainsAny(host, " /\x00") {
		return fmt.Errorf("%q: bad host %q", s, host)
	}
	if port == "*" && bind {
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !bind) {
		return fmt.Errorf("%q: bad port %q", s, port)
	}
	return nil
}
