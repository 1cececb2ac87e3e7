package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/sink"
	"aggregator/internal/zmqtest"
)

// These tests run the real binary, as systemd would: environment in,
// signals, exit status, files and HTTP out.

var aggBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aggregator-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The many-publishers test holds 2,000 publishers in this process; the
	// default context's limit must be raised before its first socket.
	zmq.SetMaxSockets(8192)
	aggBin = filepath.Join(dir, "aggregator")
	// Under -race, the daemons the tests start are built with it too, and a
	// race they report fails the test that started them (launch).
	build := []string{"build", "-o", aggBin}
	if raceBuild {
		build = append(build, "-race")
	}
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's stderr while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	http   string
	log    string // AGG_LOG_FILE
	done   chan struct{}
	exit   int
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := zmqtest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// command prepares the binary with a clean AGG_* environment: a log file in
// a fresh directory, a free HTTP port, no default connect, plus env.
func command(t *testing.T, env map[string]string, args ...string) (*exec.Cmd, *syncBuffer, map[string]string) {
	t.Helper()
	full := map[string]string{
		"AGG_LOG_FILE":  filepath.Join(t.TempDir(), "subscriber.log"),
		"AGG_HTTP_ADDR": freeAddr(t),
		"AGG_CONNECT":   "",
	}
	for k, v := range env {
		full[k] = v
	}
	cmd := exec.Command(aggBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGG_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range full {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	return cmd, stderr, full
}

// startAgg starts the daemon and waits until /-/ready says 200.
func startAgg(t *testing.T, env map[string]string) *proc {
	t.Helper()
	return launch(t, env, true)
}

// startAggNotReady starts the daemon and waits until its HTTP server
// answers, ready or not.
func startAggNotReady(t *testing.T, env map[string]string) *proc {
	t.Helper()
	return launch(t, env, false)
}

// httpGet fetches url: status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return httpDo(http.DefaultClient, req)
}

// httpDo sends req with client: status code and body, or 0 and the error.
func httpDo(client *http.Client, req *http.Request) (int, string) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func launch(t *testing.T, env map[string]string, wantReady bool) *proc {
	t.Helper()
	cmd, stderr, full := command(t, env)
	p := &proc{t: t, cmd: cmd, stderr: stderr, http: full["AGG_HTTP_ADDR"], log: full["AGG_LOG_FILE"], done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		p.exit = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if strings.Contains(stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a race in the daemon")
		}
		if t.Failed() {
			t.Logf("aggregator stderr:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + p.http + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 || !wantReady {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("aggregator exited with %d:\n%s", p.exit, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10s:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// stop sends SIGTERM and returns the exit status; the daemon has a few
// seconds to write everything and exit.
func (p *proc) stop() int {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exit
	case <-time.After(5 * time.Second):
		p.t.Fatalf("still running 5s after SIGTERM:\n%s", p.stderr.String())
		return -1
	}
}

// metric scrapes /metrics and returns the value of one series (name plus
// labels as the exposition writes them); 0 when it is absent.
func (p *proc) metric(series string) float64 {
	p.t.Helper()
	return p.metrics()[series]
}

// metrics scrapes /metrics once: every series and its value.
func (p *proc) metrics() map[string]float64 {
	p.t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	all := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			p.t.Fatalf("%q: %v", line, err)
		}
		all[line[:i]] = v
	}
	return all
}

func (p *proc) waitMetric(series string, want float64) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := p.metric(series)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s = %v, want %v", series, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var totalsRE = regexp.MustCompile(`msg=totals received=(\d+) written=(\d+) dropped=(\d+)`)

// totals reads the closing log line: messages received, written, dropped.
func (p *proc) totals() (received, written, dropped int) {
	p.t.Helper()
	m := totalsRE.FindStringSubmatch(p.stderr.String())
	if m == nil {
		p.t.Fatalf("no totals line in:\n%s", p.stderr.String())
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	c, _ := strconv.Atoi(m[3])
	return a, b, c
}

var textLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (.*)$`)

// readMessages reads every file of the log (backups and .gz included) and
// counts each message; it fails on a line that is not whole.
func readMessages(t *testing.T, path string) (map[string]int, []string) {
	t.Helper()
	files, err := sink.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	err = sink.ReadLines(path, func(file string, line []byte) {
		m := textLine.FindSubmatch(line)
		if m == nil {
			t.Fatalf("%s: malformed line %q", file, line)
		}
		seen[string(m[1])]++
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen, files
}

// load publishes n messages "<name>-<seq> <pad>" from its own goroutine,
// pausing briefly every `every` messages to spread them over time.
type load struct {
	pub  *zmqtest.Publisher
	name string
	n    int
	done chan error
	sent int
	mu   sync.Mutex
}

func startLoad(t *testing.T, pub *zmqtest.Publisher, name string, n, every int, pause time.Duration) *load {
	t.Helper()
	l := &load{pub: pub, name: name, n: n, done: make(chan error, 1)}
	pad := strings.Repeat("x", 60)
	go func() {
		for seq := range n {
			if err := pub.Send([]byte(fmt.Sprintf("%s-%d %s", name, seq, pad))); err != nil {
				l.done <- err
				return
			}
			l.mu.Lock()
			l.sent = seq + 1
			l.mu.Unlock()
			if every > 0 && seq%every == every-1 {
				time.Sleep(pause)
			}
		}
		l.done <- nil
	}()
	return l
}

func (l *load) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-l.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("publisher did not finish")
	}
}

func expectAll(t *testing.T, seen map[string]int, name string, n int) {
	t.Helper()
	pad := strings.Repeat("x", 60)
	for seq := range n {
		if c := seen[fmt.Sprintf("%s-%d %s", name, seq, pad)]; c != 1 {
			t.Fatalf("%s-%d found %d times", name, seq, c)
		}
	}
}

// publishers starts one publisher the daemon connects to and one that
// connects to the daemon's bind endpoint, and returns the daemon env.
func publishers(t *testing.T) (bound *zmqtest.Publisher, bindEP string) {
	t.Helper()
	bound, err := zmqtest.Bind()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bound.Close() })
	bindEP, err = zmqtest.FreeTCPEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	return bound, bindEP
}

func connectTo(t *testing.T, ep string) *zmqtest.Publisher {
	t.Helper()
	p, err := zmqtest.Connect(ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func subscribed(t *testing.T, pubs ...*zmqtest.Publisher) {
	t.Helper()
	for _, p := range pubs {
		if err := p.WaitSubscribed(1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}
