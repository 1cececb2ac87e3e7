package main

import (
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/zmqtest"
)

// sender is a producer socket the delivery test drives.
type sender interface {
	Send(frames ...[]byte) error
	Close() error
}

type pushSocket struct{ *zmq.Socket }

func (p pushSocket) Send(frames ...[]byte) error {
	_, err := p.SendMessage(frames)
	return err
}

// producerKind is one way a producer meets the daemon: the endpoint
// variable it needs, and how to open the producer at that endpoint. The
// publishers have a send high-water mark of 100,000 messages (downcase's
// default; libzmq's 1,000 hold 50 ms at 20,000 msg/s, less than a
// publisher's own reconnect interval of 100 ms), PUSH libzmq's 1,000.
type producerKind struct {
	name string
	env  string
	open func(ep string) (sender, error)
	// keeps is true for a producer that holds what it sends while no
	// daemon is connected: a daemon restart may lose only what was in
	// flight at the old daemon's close, nothing sent once the new one
	// listens.
	keeps bool
}

var producerKinds = []producerKind{
	{"PUB connects to AGG_BIND", "AGG_BIND", func(ep string) (sender, error) {
		p, err := zmqtest.Connect(ep)
		if err == nil {
			err = p.SetSndhwm(100_000)
		}
		return p, err
	}, true},
	{"PUSH connects to AGG_PULL_BIND", "AGG_PULL_BIND", func(ep string) (sender, error) {
		sock, err := zmq.NewSocket(zmq.PUSH)
		if err != nil {
			return nil, err
		}
		sock.SetLinger(2 * time.Second)
		return pushSocket{sock}, sock.Connect(ep)
	}, true},
	{"PUB binds, AGG_CONNECT", "AGG_CONNECT", func(ep string) (sender, error) {
		var p *zmqtest.Publisher
		var err error
		for range 50 { // the port of the producer just closed may still be held
			if p, err = zmqtest.BindAt(ep); err == nil {
				return p, p.SetSndhwm(100_000)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil, err
	}, false},
}

// TestDeliveryUnderLoad sends 20,000 messages of 100 bytes a second for 3 s through
// each kind of producer, disturbs the pair after 1 s, and counts what never
// reached the file: the figures of docs/delivery.md.
//
//   - daemon restart: the daemon stops (taking all libzmq holds) and a new
//     one starts. A producer that connects keeps what it sends meanwhile:
//     only what was in flight at the close is lost (how much depends on
//     how far behind the daemon's I/O thread was, so on the machine's
//     load), never what was sent after the new daemon listened. A
//     publisher that binds drops what it sends while nobody is subscribed.
//   - producer restart: the producer closes (linger 2 s) and a new one
//     opens at once.
//   - daemon frozen: SIGSTOP for 500 ms, as a daemon slower than its
//     producers: PUB fills its queue and drops, PUSH waits.
func TestDeliveryUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("sends for seconds")
	}
	const rate, runFor, disturbAt = 20_000, 3 * time.Second, time.Second
	pad := strings.Repeat("x", 90)
	for _, kind := range producerKinds {
		for _, event := range []string{"daemon restart", "producer restart", "daemon frozen"} {
			t.Run(kind.name+"/"+event, func(t *testing.T) {
				ep, err := zmqtest.FreeTCPEndpoint()
				if err != nil {
					t.Fatal(err)
				}
				env := map[string]string{kind.env: ep, "AGG_LOG_FILE": t.TempDir() + "/subscriber.log", "AGG_HTTP_ADDR": freeAddr(t)}
				d := startAgg(t, env)
				first, err := kind.open(ep)
				if err != nil {
					t.Fatal(err)
				}
				if x, ok := first.(*zmqtest.Publisher); ok {
					subscribed(t, x)
				} else {
					d.waitMetric(`aggregator_endpoint_connections{endpoint="`+ep+`"}`, 1)
				}

				// One goroutine owns the producer: it sends at rate, and
				// replaces the producer when asked.
				type result struct {
					sent int
					err  error
				}
				done, reopen := make(chan result, 1), make(chan struct{})
				var sending atomic.Int64 // what has been sent so far
				go func() {
					pub, sent := first, 0
					defer func() { pub.Close() }()
					start := time.Now()
					tick := time.NewTicker(time.Millisecond)
					defer tick.Stop()
					for time.Since(start) < runFor {
						select {
						case <-tick.C:
						case <-reopen:
							pub.Close()
							if pub, err = kind.open(ep); err != nil {
								done <- result{sent, err}
								return
							}
						}
						for sent < int(time.Since(start).Seconds()*rate) {
							if err := pub.Send(fmt.Appendf(nil, "r-%d %s", sent, pad)); err != nil {
								done <- result{sent, err}
								return
							}
							sent++
							sending.Store(int64(sent))
						}
					}
					done <- result{sent, nil}
				}()
				time.Sleep(disturbAt)
				t0 := time.Now()
				closedAt, listenedAt := -1, -1 // what was sent when the old daemon was gone, when the new one listened
				switch event {
				case "daemon restart":
					d.signal(syscall.SIGTERM)
					<-d.done
					closedAt = int(sending.Load())
					if d.exit != 0 {
						t.Fatalf("exit %d at restart", d.exit)
					}
					d = startAgg(t, env)
					listenedAt = int(sending.Load())
				case "producer restart":
					reopen <- struct{}{}
				case "daemon frozen":
					d.signal(syscall.SIGSTOP)
					time.Sleep(500 * time.Millisecond)
					d.signal(syscall.SIGCONT)
				}
				away := time.Since(t0)
				r := <-done
				if r.err != nil {
					t.Fatal(r.err)
				}
				// Let the last messages arrive, then stop cleanly.
				last, stable := -1.0, 0
				for stable < 10 {
					n := d.metric("aggregator_lines_written_total")
					if n == last {
						stable++
					} else {
						stable = 0
					}
					last = n
					time.Sleep(50 * time.Millisecond)
				}
				if code := d.stop(); code != 0 {
					t.Fatalf("exit %d", code)
				}
				seen, _ := readMessages(t, env["AGG_LOG_FILE"])
				missing, firstLost, lastLost := 0, -1, -1
				for i := range r.sent {
					switch c := seen[fmt.Sprintf("r-%d %s", i, pad)]; c {
					case 0:
						missing++
						if firstLost < 0 {
							firstLost = i
						}
						lastLost = i
					case 1:
					default:
						t.Fatalf("r-%d written %d times", i, c)
					}
				}
				if extra := len(seen) - (r.sent - missing); extra != 0 {
					t.Errorf("%d lines that were never sent", extra)
				}
				share := float64(missing) / float64(r.sent)
				t.Logf("%s, %s (%s): sent %d at %d/s, %d lost (%.3f%%)",
					kind.name, event, away.Round(time.Millisecond), r.sent, rate, missing, 100*share)
				if event == "daemon restart" && missing > 0 {
					t.Logf("lost r-%d to r-%d; %d had been sent when the old daemon was gone, %d when the new one listened",
						firstLost, lastLost, closedAt, listenedAt)
					if kind.keeps && lastLost >= listenedAt {
						t.Errorf("r-%d was lost, sent after the new daemon listened: the producer did not keep what it sent while the daemon was away", lastLost)
					}
				}
			})
		}
	}
}
