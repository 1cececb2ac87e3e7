package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/sink"
)

// sample is one run of one subscriber.
type sample struct {
	elapsed time.Duration
	cpu     float64 // seconds
	rss     int64   // bytes
	syncs   int     // fdatasyncs of the live file, until the last line was in it
	t       tally
}

func (s sample) rate(n int) float64 { return float64(n) / s.elapsed.Seconds() }

// daemonLineLen is the length of a text line for a message of size bytes:
// 27-byte UTC timestamp, space, message, newline.
func daemonLineLen(size int) int64 { return int64(27 + 1 + size + 1) }

// runDaemonPeak sends n messages from p publishers to a fresh aggregator
// (no rotation in the run) and times until every line is in the file.
// env adds to or overrides the daemon's settings.
func runDaemonPeak(bins binaries, p, n, size int, env map[string]string) (sample, error) {
	pubs, err := newPublishers(p)
	if err != nil {
		return sample{}, err
	}
	defer pubs.close()
	d, err := startDaemon(bins.aggregator, with(map[string]string{
		"AGG_CONNECT":     strings.Join(pubs.endpoints(), ","),
		"AGG_MAX_SIZE_MB": "100000",
	}, env))
	if err != nil {
		return sample{}, err
	}
	defer d.cleanup()
	defer d.kill()
	if err := pubs.waitSubscribed(); err != nil {
		return sample{}, err
	}
	pid := d.cmd.Process.Pid
	cpu0, _ := cpuSeconds(pid)
	profiled := profileDaemon(d)
	start := time.Now()
	if err := pubs.sendAll(n, size); err != nil {
		return sample{}, err
	}
	want := int64(n) * daemonLineLen(size)
	if err := waitFor(2*time.Minute, time.Millisecond, func() bool {
		info, err := os.Stat(d.log)
		return err == nil && info.Size() >= want
	}); err != nil {
		return sample{}, fmt.Errorf("daemon wrote %v of %d lines", d.metric("aggregator_lines_written_total"), n)
	}
	s := sample{elapsed: time.Since(start)}
	cpu1, _ := cpuSeconds(pid)
	s.cpu = cpu1 - cpu0
	s.rss, _ = peakRSS(pid)
	s.syncs = int(d.metric("aggregator_file_sync_seconds_count"))
	if memDetail {
		printMemory(pid, d)
	}
	<-profiled
	if err := d.stop(); err != nil {
		return s, err
	}
	s.t, err = verifyLog(d.log, p, n)
	return s, err
}

// memDetail, set by -mem, prints where the daemon's memory is after each
// peak run.
var memDetail bool

func printMemory(pid int, d *daemon) {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "Rss") || strings.HasPrefix(l, "VmHWM") {
			fmt.Fprintln(os.Stderr, l)
		}
	}
	for _, m := range []string{"go_memstats_heap_sys_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes"} {
		fmt.Fprintln(os.Stderr, m, d.metric(m))
	}
	// Resident memory by kind of mapping: the Go heap's arenas (from
	// 0xc000000000), the C heap (brk and glibc's per-thread arenas, where
	// libzmq allocates), and files (the binary and the libraries).
	smaps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	kinds := map[string]int64{}
	kind := ""
	for _, l := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-"):
			switch {
			case strings.HasPrefix(f[0], "c0"):
				kind = "go arenas"
			case len(f) >= 6 && strings.HasPrefix(f[5], "/"):
				kind = "files"
			case len(f) >= 6:
				kind = f[5]
			default:
				kind = "anonymous (C heap, thread stacks, Go runtime)"
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			kinds[kind] += kb
		}
	}
	for k, kb := range kinds {
		fmt.Fprintf(os.Stderr, "  %-50s %8d kB\n", k, kb)
	}
}

// cpuProfile, when set by -cpuprofile, is where the daemon's CPU profile
// of a peak run is saved (the last run wins).
var cpuProfile string

// profileDaemon fetches a 1-second CPU profile from the daemon's
// /debug/pprof, if asked; the channel closes when it is saved.
func profileDaemon(d *daemon) <-chan struct{} {
	done := make(chan struct{})
	if cpuProfile == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		resp, err := http.Get("http://" + d.http + "/debug/pprof/profile?seconds=1")
		if err != nil {
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(cpuProfile)
		if err != nil {
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}()
	return done
}

// runReference does the same with the bare reference subscriber.
func runReference(bins binaries, p, n, size int) (sample, error) {
	pubs, err := newPublishers(p)
	if err != nil {
		return sample{}, err
	}
	defer pubs.close()
	dir, err := os.MkdirTemp("", "bench-ref")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "ref.log")
	cmd := exec.Command(bins.refsub, append([]string{"-out", out, "-n", strconv.Itoa(n)}, pubs.endpoints()...)...)
	stdout, _ := cmd.StdoutPipe()
	var errs strings.Builder
	cmd.Stderr = &errs
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	defer cmd.Process.Kill()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		return sample{}, fmt.Errorf("refsub: %q %s", line, errs.String())
	}
	if err := pubs.waitSubscribed(); err != nil {
		return sample{}, err
	}
	start := time.Now()
	if err := pubs.sendAll(n, size); err != nil {
		return sample{}, err
	}
	if err := cmd.Wait(); err != nil {
		return sample{}, fmt.Errorf("refsub: %v %s", err, errs.String())
	}
	s := sample{elapsed: time.Since(start)}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	s.rss = ru.Maxrss << 10
	v := newVerifier(p, n)
	err = sink.ReadLines(out, func(_ string, line []byte) { v.line(line) })
	s.t = v.result()
	return s, err
}

// runDaemonRotating sends n messages to an aggregator rotating every
// rotateMB with compression (codec) on, and times until the last backup
// is compressed. env adds to or overrides the daemon's settings.
func runDaemonRotating(bins binaries, p, n, size, rotateMB int, codec string, env map[string]string) (sample, int, error) {
	pubs, err := newPublishers(p)
	if err != nil {
		return sample{}, 0, err
	}
	defer pubs.close()
	d, err := startDaemon(bins.aggregator, with(map[string]string{
		"AGG_CONNECT":     strings.Join(pubs.endpoints(), ","),
		"AGG_MAX_SIZE_MB": strconv.Itoa(rotateMB),
		"AGG_MAX_BACKUPS": "0",
		"AGG_COMPRESS":    codec,
	}, env))
	if err != nil {
		return sample{}, 0, err
	}
	defer d.cleanup()
	defer d.kill()
	if err := pubs.waitSubscribed(); err != nil {
		return sample{}, 0, err
	}
	pid := d.cmd.Process.Pid
	cpu0, _ := cpuSeconds(pid)
	start := time.Now()
	if err := pubs.sendAll(n, size); err != nil {
		return sample{}, 0, err
	}
	if err := d.waitWrittenAndCompressed(n, "size", 5*time.Minute); err != nil {
		return sample{}, 0, err
	}
	s := sample{elapsed: time.Since(start)}
	cpu1, _ := cpuSeconds(pid)
	s.cpu = cpu1 - cpu0
	s.rss, _ = peakRSS(pid)
	s.syncs = int(d.metric("aggregator_file_sync_seconds_count"))
	rotations := int(d.metric(`aggregator_rotations_total{reason="size"}`))
	if err := d.stop(); err != nil {
		return s, rotations, err
	}
	s.t, err = verifyLog(d.log, p, n)
	return s, rotations, err
}

// waitWrittenAndCompressed waits until the daemon has written n lines and
// compressed every backup its rotations (for reason) made.
func (d *daemon) waitWrittenAndCompressed(n int, reason string, limit time.Duration) error {
	rotations := fmt.Sprintf(`aggregator_rotations_total{reason=%q}`, reason)
	if err := waitFor(limit, 5*time.Millisecond, func() bool {
		return d.metric("aggregator_lines_written_total") >= float64(n) &&
			d.metric("aggregator_backups_compressed_total") >= d.metric(rotations)
	}); err != nil {
		return fmt.Errorf("not done: %v lines, %v compressed", d.metric("aggregator_lines_written_total"), d.metric("aggregator_backups_compressed_total"))
	}
	return nil
}

// latencies sends at a fixed rate and measures, for each message, the time
// from send to the moment its line can be read from the file (watched
// with inotify).
func runLatency(bins binaries, rate int, dur time.Duration, size int) ([]time.Duration, tally, error) {
	pubs, err := newPublishers(1)
	if err != nil {
		return nil, tally{}, err
	}
	defer pubs.close()
	d, err := startDaemon(bins.aggregator, map[string]string{"AGG_CONNECT": pubs.endpoints()[0]})
	if err != nil {
		return nil, tally{}, err
	}
	defer d.cleanup()
	defer d.kill()
	if err := pubs.waitSubscribed(); err != nil {
		return nil, tally{}, err
	}
	expected := int(time.Duration(rate) * dur / time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	type watched struct {
		lat []time.Duration
		err error
	}
	res := make(chan watched, 1)
	go func() {
		lat, err := watchFile(ctx, d.log, expected)
		res <- watched{lat, err}
	}()
	sent, err := pubs.sendPaced(rate, dur, size)
	if err != nil {
		return nil, tally{}, err
	}
	if sent != expected {
		return nil, tally{}, fmt.Errorf("sent %d, expected %d", sent, expected)
	}
	w := <-res
	if w.err != nil {
		return nil, tally{}, w.err
	}
	if err := d.stop(); err != nil {
		return nil, tally{}, err
	}
	t, err := verifyLog(d.log, 1, expected)
	return w.lat, t, err
}

// watchFile follows path with inotify until n lines have been read.
func watchFile(ctx context.Context, path string, n int) ([]time.Duration, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_MODIFY); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		lat     []time.Duration
		partial []byte
		buf     = make([]byte, 1<<20)
		evbuf   = make([]byte, 4096)
		pfds    = []unixPollFd{{fd: int32(fd), events: pollIn}}
	)
	for len(lat) < n {
		if ctx.Err() != nil {
			return lat, fmt.Errorf("saw %d of %d lines", len(lat), n)
		}
		poll(pfds, 100)
		syscall.Read(fd, evbuf) // drain events; the file is read regardless
		for {
			k, _ := f.Read(buf)
			if k <= 0 {
				break
			}
			now := time.Now().UnixNano()
			data := append(partial, buf[:k]...)
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if _, _, sent, ok := parseMsg(payloadOf(data[:i])); ok {
					lat = append(lat, time.Duration(now-sent))
				}
				data = data[i+1:]
			}
			partial = append(partial[:0], data...)
		}
	}
	return lat, nil
}

// downcaseResult is one wrk run against downcase.
type downcaseResult struct {
	requests, published, counted int
	rps                          float64
	p99                          time.Duration
	non2xx                       int
}

// runDowncase drives downcase with wrk while a SUB socket counts every
// published message.
func runDowncase(bins binaries, threads, conns int, dur time.Duration) (downcaseResult, error) {
	var r downcaseResult
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return r, errors.New("wrk is not installed (apt-get install wrk)")
	}
	httpAddr, _ := freeAddr()
	pubAddr, _ := freeAddr()
	cmd := exec.Command(bins.downcase)
	cmd.Env = append(os.Environ(), "DOWNCASE_HTTP_ADDR="+httpAddr, "DOWNCASE_PUB_BIND=tcp://"+pubAddr, "DOWNCASE_LOG_LEVEL=warn")
	var errs strings.Builder
	cmd.Stderr = &errs
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()

	sub, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		return r, err
	}
	sub.SetLinger(0)
	sub.SetRcvhwm(0)
	sub.SetSubscribe("")
	sub.SetRcvtimeo(100 * time.Millisecond)
	if err := sub.Connect("tcp://" + pubAddr); err != nil {
		return r, err
	}
	var counted atomic.Int64
	stop := make(chan struct{})
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		defer sub.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := sub.RecvBytes(0); err == nil {
				counted.Add(1)
			}
		}
	}()
	defer func() { close(stop); <-subDone }()

	url := "http://" + httpAddr + "/downcase/?param=HeLLo"
	// Slow joiner: probe until the subscriber sees messages.
	if err := waitFor(10*time.Second, 20*time.Millisecond, func() bool {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
		}
		return counted.Load() > 0
	}); err != nil {
		return r, fmt.Errorf("subscriber never joined: %s", errs.String())
	}
	time.Sleep(100 * time.Millisecond)
	c0 := counted.Load()
	p0 := scrape(httpAddr, "downcase_messages_published_total")

	out, err := exec.Command(wrk, "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(conns),
		"-d"+dur.String(), "--latency", url).CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	if err := parseWrk(string(out), &r); err != nil {
		return r, err
	}
	waitFor(5*time.Second, 20*time.Millisecond, func() bool {
		p := scrape(httpAddr, "downcase_messages_published_total") - p0
		return int(p) >= r.requests && counted.Load()-c0 >= int64(p)
	})
	r.published = int(scrape(httpAddr, "downcase_messages_published_total") - p0)
	r.counted = int(counted.Load() - c0)
	return r, nil
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99      = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func parseWrk(out string, r *downcaseResult) error {
	m1, m2, m3 := wrkRequests.FindStringSubmatch(out), wrkRPS.FindStringSubmatch(out), wrkP99.FindStringSubmatch(out)
	if m1 == nil || m2 == nil || m3 == nil {
		return fmt.Errorf("cannot read wrk output:\n%s", out)
	}
	r.requests, _ = strconv.Atoi(m1[1])
	r.rps, _ = strconv.ParseFloat(m2[1], 64)
	v, _ := strconv.ParseFloat(m3[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m3[2]]
	r.p99 = time.Duration(v * float64(unit))
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	return nil
}

// verifyLog reads the live file and every backup, compressed ones included.
func verifyLog(path string, p, n int) (tally, error) {
	v := newVerifier(p, n)
	err := sink.ReadLines(path, func(_ string, line []byte) { v.line(payloadOf(line)) })
	return v.result(), err
}

// with returns env with extra's settings added or replaced.
func with(env, extra map[string]string) map[string]string {
	maps.Copy(env, extra)
	return env
}

func waitFor(timeout, every time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(every)
	}
	return nil
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
