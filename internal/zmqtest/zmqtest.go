// Package zmqtest gives tests and the benchmark real ZeroMQ publishers on
// loopback that know when a subscriber has joined, so that nothing is sent
// into the void before the subscription arrives (PUB/SUB's slow joiner).
package zmqtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/curve"
)

// Publisher is an XPUB socket: it publishes like PUB, and also hands us the
// subscriptions of the peers that join.
type Publisher struct {
	sock *zmq.Socket
	// Endpoint is where the publisher is bound, or what it connects to.
	Endpoint string
}

func newPublisher() (*Publisher, error) {
	sock, err := zmq.NewSocket(zmq.XPUB)
	if err != nil {
		return nil, err
	}
	err = firstErr(
		sock.SetLinger(2*time.Second), // let the last messages go out on Close
		sock.SetSndhwm(0),             // never drop: tests count every message
		sock.SetXpubVerbose(1),        // report every subscription, even repeats
	)
	if err != nil {
		sock.Close()
		return nil, err
	}
	return &Publisher{sock: sock}, nil
}

// Bind starts a publisher on a free loopback port.
func Bind() (*Publisher, error) {
	p, err := newPublisher()
	if err != nil {
		return nil, err
	}
	if err := p.sock.Bind("tcp://127.0.0.1:*"); err != nil {
		p.sock.Close()
		return nil, err
	}
	if p.Endpoint, err = p.sock.GetLastEndpoint(); err != nil {
		p.sock.Close()
		return nil, err
	}
	return p, nil
}

// BindAt starts a publisher on endpoint, e.g. to bring one back on the
// port it had before.
func BindAt(endpoint string) (*Publisher, error) {
	p, err := newPublisher()
	if err != nil {
		return nil, err
	}
	if err := p.sock.Bind(endpoint); err != nil {
		p.sock.Close()
		return nil, err
	}
	p.Endpoint = endpoint
	return p, nil
}

// Connect starts a publisher that connects to a subscriber's bind endpoint.
func Connect(endpoint string) (*Publisher, error) {
	return ConnectCurve(endpoint, nil, "")
}

// ConnectCurve is Connect as a CurveZMQ client with identity id of the
// server with public key server (plain text when id is nil).
func ConnectCurve(endpoint string, id *curve.Identity, server string) (*Publisher, error) {
	p, err := newPublisher()
	if err != nil {
		return nil, err
	}
	if id != nil {
		if err := curve.Client(p.sock, *id, server); err != nil {
			p.sock.Close()
			return nil, err
		}
	}
	if err := p.sock.Connect(endpoint); err != nil {
		p.sock.Close()
		return nil, err
	}
	p.Endpoint = endpoint
	return p, nil
}

// WaitSubscribed waits until n subscriptions have arrived (one per topic
// per subscriber) or timeout passes.
func (p *Publisher) WaitSubscribed(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for got := 0; got < n; {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s: %d of %d subscriptions after %s", p.Endpoint, got, n, timeout)
		}
		if err := p.sock.SetRcvtimeo(left); err != nil {
			return err
		}
		msg, err := p.sock.RecvBytes(0)
		if err != nil {
			continue // timeout: the loop checks the deadline
		}
		if len(msg) > 0 && msg[0] == 1 { // 1 = subscribe, 0 = unsubscribe
			got++
		}
	}
	return nil
}

// Send publishes one message of one or more frames.
func (p *Publisher) Send(frames ...[]byte) error {
	for i, f := range frames {
		flag := zmq.Flag(0)
		if i < len(frames)-1 {
			flag = zmq.SNDMORE
		}
		if _, err := p.sock.SendBytes(f, flag); err != nil {
			return err
		}
	}
	return nil
}

// SetSndhwm sets the send high-water mark (tests make it unlimited, as a
// real publisher's is not: libzmq's default is 1,000 messages).
func (p *Publisher) SetSndhwm(n int) error { return p.sock.SetSndhwm(n) }

// Close closes the socket, waiting up to its linger for queued messages.
func (p *Publisher) Close() error { return p.sock.Close() }

// FreeAddr returns 127.0.0.1:PORT with a port that was free a moment ago,
// for a server that must bind it itself. The port lies below the kernel's
// ephemeral range: a port from that range (what binding port 0 gives) can
// be taken in the meantime by any outgoing connection on the machine, a
// parallel test's or the very client that waits for the server (a
// connect to a port nobody listens on can connect to itself), and the
// server then fails to bind.
func FreeAddr() (string, error) {
	low := ephemeralLow()
	handedMu.Lock()
	defer handedMu.Unlock()
	for range 100 {
		port := freeLow + rand.IntN(low-freeLow)
		if handed[port] { // free again once its server stopped, but a test may start it again
			continue
		}
		handed[port] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		defer l.Close()
		return l.Addr().String(), nil
	}
	return "", fmt.Errorf("no free port in %d-%d", freeLow, low-1)
}

// handed are the ports FreeAddr gave in this process: never twice, so
// that two servers of one test never get the same one.
var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

// freeLow is the lowest port FreeAddr picks: above the registered ports
// that services on a test machine commonly use.
const freeLow = 20000

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read, Linux's default).
func ephemeralLow() int {
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > freeLow+1000 {
				low = n
			}
		}
	}
	return low
}

// FreeTCPEndpoint is FreeAddr as a ZeroMQ endpoint, tcp://127.0.0.1:PORT.
func FreeTCPEndpoint() (string, error) {
	addr, err := FreeAddr()
	return "tcp://" + addr, err
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
