package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/zmqtest"
)

// sender is a producer socket the restart test drives: an XPUB that binds
// or connects, or a PUSH that connects.
type sender interface {
	Send(frames ...[]byte) error
	Close() error
}

type pushSocket struct{ *zmq.Socket }

func (p pushSocket) Send(frames ...[]byte) error {
	_, err := p.SendMessage(frames)
	return err
}

// TestRestartUnderLoad restarts the daemon while a producer sends 20,000
// messages a second, and counts what never reached the file, for each
// kind of endpoint. The README's delivery table gives these figures. A
// producer that connects (to AGG_BIND or AGG_PULL_BIND) keeps what it
// sends while the daemon is away and delivers it when it is back: only
// what was in flight when the old daemon closed its sockets is lost, and
// the bound is 0.2% of what was sent. A publisher that binds (AGG_CONNECT)
// drops everything it sends while no subscriber is connected.
func TestRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("sends for seconds")
	}
	const rate, runFor, restartAt = 20_000, 3 * time.Second, time.Second
	for _, tc := range []struct {
		name  string
		bound float64 // most of what was sent that may be lost; 0: no bound, report only
		start func(t *testing.T) (sender, map[string]string)
	}{
		{"publisher connects to AGG_BIND", 0.002, func(t *testing.T) (sender, map[string]string) {
			ep, err := zmqtest.FreeTCPEndpoint()
			if err != nil {
				t.Fatal(err)
			}
			return connectTo(t, ep), map[string]string{"AGG_BIND": ep}
		}},
		{"PUSH connects to AGG_PULL_BIND", 0.002, func(t *testing.T) (sender, map[string]string) {
			ep, err := zmqtest.FreeTCPEndpoint()
			if err != nil {
				t.Fatal(err)
			}
			sock, err := zmq.NewSocket(zmq.PUSH)
			if err != nil {
				t.Fatal(err)
			}
			sock.SetSndhwm(0)
			sock.SetLinger(0)
			if err := sock.Connect(ep); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sock.Close() })
			return pushSocket{sock}, map[string]string{"AGG_PULL_BIND": ep}
		}},
		{"publisher binds, AGG_CONNECT", 0, func(t *testing.T) (sender, map[string]string) {
			p, err := zmqtest.Bind()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p, map[string]string{"AGG_CONNECT": p.Endpoint}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, env := tc.start(t)
			env["AGG_LOG_FILE"] = t.TempDir() + "/subscriber.log"
			env["AGG_HTTP_ADDR"] = freeAddr(t)
			d := startAgg(t, env)
			if x, ok := pub.(*zmqtest.Publisher); ok {
				subscribed(t, x)
			}

			// Send at rate from one goroutine (the only one to touch the
			// producer socket); restart the daemon at restartAt from this one.
			type result struct {
				sent int
				err  error
			}
			done := make(chan result, 1)
			go func() {
				sent := 0
				start := time.Now()
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for time.Since(start) < runFor {
					<-tick.C
					for sent < int(time.Since(start).Seconds()*rate) {
						if err := pub.Send([]byte(fmt.Sprintf("r-%d", sent))); err != nil {
							done <- result{sent, err}
							return
						}
						sent++
					}
				}
				done <- result{sent, nil}
			}()
			time.Sleep(restartAt)
			t0 := time.Now()
			d.signal(syscall.SIGTERM)
			<-d.done
			if d.exit != 0 {
				t.Fatalf("exit %d at restart", d.exit)
			}
			d = startAgg(t, env)
			away := time.Since(t0)
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			sent := r.sent
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
			missing := 0
			for i := range sent {
				switch c := seen[fmt.Sprintf("r-%d", i)]; c {
				case 0:
					missing++
				case 1:
				default:
					t.Fatalf("r-%d written %d times", i, c)
				}
			}
			share := float64(missing) / float64(sent)
			t.Logf("%s: sent %d at %d/s, daemon away %s: %d lost (%.3f%%)",
				tc.name, sent, rate, away.Round(time.Millisecond), missing, 100*share)
			if tc.bound > 0 && share > tc.bound {
				t.Errorf("lost %d of %d (%.3f%%), more than %.1f%%", missing, sent, 100*share, 100*tc.bound)
			}
			if extra := len(seen) - (sent - missing); extra != 0 {
				t.Errorf("%d lines that were never sent", extra)
			}
		})
	}
}
