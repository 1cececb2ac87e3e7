package main

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"time"

	"aggregator/internal/zmqtest"
)

// Each benchmark message carries its publisher, sequence number and send
// time, padded with 'x' to the message size:
//
//	"0003 0000012345 1795577526900810030 xxxxxxxx..."
const (
	pubDigits = 4 // up to 10,000 publishers (the many-publishers run has 2,000)
	seqAt     = pubDigits + 1
	sentAt    = seqAt + 10 + 1
	headerLen = sentAt + 19 + 1
)

// formatMsg writes one message of exactly size bytes (at least headerLen)
// into buf.
func formatMsg(buf []byte, pub, seq int, sent int64, size int) []byte {
	buf = buf[:0]
	buf = appendPadded(buf, int64(pub), pubDigits)
	buf = append(buf, ' ')
	buf = appendPadded(buf, int64(seq), 10)
	buf = append(buf, ' ')
	buf = appendPadded(buf, sent, 19)
	buf = append(buf, ' ')
	for len(buf) < size {
		buf = append(buf, 'x')
	}
	return buf
}

// appendPadded writes v (non-negative) as exactly width digits.
func appendPadded(buf []byte, v int64, width int) []byte {
	start := len(buf)
	for range width {
		buf = append(buf, '0')
	}
	for i := start + width - 1; i >= start && v > 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return buf
}

// parseMsg reads the header of a message (a log line's payload).
func parseMsg(msg []byte) (pub, seq int, sent int64, ok bool) {
	if len(msg) < headerLen || msg[seqAt-1] != ' ' || msg[sentAt-1] != ' ' || msg[headerLen-1] != ' ' {
		return 0, 0, 0, false
	}
	p, err1 := strconv.Atoi(string(msg[:seqAt-1]))
	s, err2 := strconv.Atoi(string(msg[seqAt : sentAt-1]))
	t, err3 := strconv.ParseInt(string(msg[sentAt:headerLen-1]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return p, s, t, true
}

// publishers are P XPUB sockets bound on loopback, with no send
// high-water mark: the benchmark measures the subscriber, not ZeroMQ's
// drop policy.
type publishers []*zmqtest.Publisher

func newPublishers(p int) (publishers, error) {
	var ps publishers
	for range p {
		pub, err := zmqtest.Bind()
		if err != nil {
			ps.close()
			return nil, err
		}
		ps = append(ps, pub)
	}
	return ps, nil
}

func (ps publishers) endpoints() []string {
	var eps []string
	for _, p := range ps {
		eps = append(eps, p.Endpoint)
	}
	return eps
}

func (ps publishers) waitSubscribed() error {
	for _, p := range ps {
		if err := p.WaitSubscribed(1, 15*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (ps publishers) close() {
	for _, p := range ps {
		p.Close()
	}
}

// sendAll sends n messages in total, split evenly, each publisher from its
// own goroutine, as fast as they go.
func (ps publishers) sendAll(n, size int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(ps))
	for i, p := range ps {
		count := n / len(ps)
		if i < n%len(ps) {
			count++
		}
		wg.Go(func() {
			buf := make([]byte, 0, size)
			for seq := range count {
				buf = formatMsg(buf, i, seq, time.Now().UnixNano(), size)
				if err := p.Send(buf); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// sendEvery sends rate messages a second from every publisher for d, all
// from this goroutine, and returns how many each sent. Publisher i signs
// its messages first+i.
func (ps publishers) sendEvery(first, rate int, d time.Duration, size int) (int, error) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	buf := make([]byte, 0, size)
	rounds := int(d.Seconds() * float64(rate))
	for seq := range rounds {
		for i, p := range ps {
			buf = formatMsg(buf, first+i, seq, time.Now().UnixNano(), size)
			if err := p.Send(buf); err != nil {
				return seq, err
			}
		}
		<-tick.C
	}
	return rounds, nil
}

// sendPaced sends from the first publisher at rate messages a second for
// d, and returns how many it sent.
func (ps publishers) sendPaced(rate int, d time.Duration, size int) (int, error) {
	interval := time.Second / time.Duration(rate)
	buf := make([]byte, 0, size)
	start := time.Now()
	seq := 0
	for {
		next := start.Add(time.Duration(seq) * interval)
		if next.Sub(start) >= d {
			return seq, nil
		}
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
		buf = formatMsg(buf, 0, seq, time.Now().UnixNano(), size)
		if err := ps[0].Send(buf); err != nil {
			return seq, err
		}
		seq++
	}
}

// count is what the verifier found for one publisher, or for all.
type count struct {
	received, missing, duplicated, outOfOrder int
}

// tally is the verifier's account of one run: totals and per publisher.
type tally struct {
	count
	lines, malformed int
	perPub           []count
}

func (t tally) String() string {
	s := fmt.Sprintf("lines %d (malformed %d); received %d, missing %d, duplicated %d, out of order %d",
		t.lines, t.malformed, t.received, t.missing, t.duplicated, t.outOfOrder)
	for i, c := range t.perPub {
		s += fmt.Sprintf("\n  publisher %d: received %d, missing %d, duplicated %d, out of order %d",
			i, c.received, c.missing, c.duplicated, c.outOfOrder)
	}
	return s
}

func (t tally) ok() bool {
	return t.missing == 0 && t.duplicated == 0 && t.malformed == 0
}

// verifier counts messages per publisher as lines are fed in file order.
type verifier struct {
	seen [][]bool
	last []int
	t    tally
}

func newVerifier(p int, n int) *verifier {
	v := &verifier{seen: make([][]bool, p), last: make([]int, p), t: tally{perPub: make([]count, p)}}
	for i := range p {
		size := n / p
		if i < n%p {
			size++
		}
		v.seen[i] = make([]bool, size)
		v.last[i] = -1
	}
	return v
}

func (v *verifier) line(payload []byte) {
	v.t.lines++
	pub, seq, _, ok := parseMsg(payload)
	if !ok || pub >= len(v.seen) || seq >= len(v.seen[pub]) {
		v.t.malformed++
		return
	}
	c := &v.t.perPub[pub]
	c.received++
	if v.seen[pub][seq] {
		c.duplicated++
	}
	v.seen[pub][seq] = true
	if seq < v.last[pub] {
		c.outOfOrder++
	}
	v.last[pub] = seq
}

func (v *verifier) result() tally {
	t := v.t
	t.perPub = append([]count(nil), v.t.perPub...)
	for i, s := range v.seen {
		for _, ok := range s {
			if !ok {
				t.perPub[i].missing++
			}
		}
		c := t.perPub[i]
		t.received += c.received
		t.missing += c.missing
		t.duplicated += c.duplicated
		t.outOfOrder += c.outOfOrder
	}
	return t
}

// payloadOf strips the aggregator's "<time> " prefix from a text line.
func payloadOf(line []byte) []byte {
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		return line[i+1:]
	}
	return line
}
