// Command bench is aggregator's benchmark. It builds the binaries, runs a
// load generator (P publishers, N messages of S bytes, each carrying its
// publisher, sequence number and send time), and measures aggregator
// against a bare reference subscriber in the same run:
//
//   - peak throughput (no rotation), CPU and peak RSS, medians of -runs;
//   - sustained throughput with rotation and compression, until the last
//     backup is compressed;
//   - latency from send to line-in-file at a fixed rate;
//   - downcase requests per second under wrk, with every published
//     message counted by a subscriber.
//
// A verifier reads the live file and every backup (.gz and .zst included) and
// reports missing, duplicated and out-of-order messages. Run it with
// `make bench` or `go run ./bench`; `-smoke` is the tiny run CI does.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	zmq "github.com/pebbe/zmq4"
)

type config struct {
	runs        int
	size        int
	ns, ps      []int
	rotateN     int
	rotateMB    int
	latRate     int
	latDur      time.Duration
	wrkDur      time.Duration
	wrkThreads  int
	wrkConns    int
	skipDC      bool
	only        string
	forwardN    int
	catchUpN    int
	topicsN     int
	readN       int
	topicsCases []topicsCase
	syncN       int
	many        int
	manyRate    int
	manyDur     time.Duration
	idleDur     time.Duration
}

func main() {
	var c config
	var ns, ps string
	smoke := flag.Bool("smoke", false, "a tiny run of every part (what CI runs)")
	flag.IntVar(&c.runs, "runs", 3, "runs per peak-throughput case; the median is reported")
	flag.IntVar(&c.size, "size", 100, "message size in bytes")
	flag.StringVar(&ns, "n", "200000,2000000", "message counts for peak throughput")
	flag.StringVar(&ps, "p", "1,4", "publisher counts for peak throughput")
	flag.IntVar(&c.rotateN, "rotate-n", 3_000_000, "messages for the rotation run (0 skips it)")
	flag.IntVar(&c.rotateMB, "rotate-mb", 20, "rotation size in the rotation run")
	flag.IntVar(&c.latRate, "lat-rate", 10_000, "messages a second in the latency run (0 skips it)")
	flag.DurationVar(&c.latDur, "lat-dur", 5*time.Second, "length of the latency run")
	flag.DurationVar(&c.wrkDur, "wrk-dur", 5*time.Second, "length of the downcase run")
	flag.IntVar(&c.wrkThreads, "wrk-threads", 2, "wrk threads")
	flag.IntVar(&c.wrkConns, "wrk-conns", 64, "wrk connections")
	flag.BoolVar(&c.skipDC, "skip-downcase", false, "skip the downcase run")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "save a 1 s CPU profile of the daemon during each peak run to this file")
	flag.BoolVar(&memDetail, "mem", false, "print the daemon's memory (RSS by kind, Go heap) after each peak run")
	flag.IntVar(&c.forwardN, "forward-n", 1_000_000, "messages in the NATS forwarding run (0 skips it)")
	flag.IntVar(&c.topicsN, "topics-n", 2_000_000, "messages per run of the file-per-topic cases (0 skips them)")
	flag.IntVar(&c.readN, "read-n", 1_000_000, "messages the daemon writes for aggregator read --grep against zstdcat | grep -F (0 skips it)")
	var topics string
	flag.StringVar(&topics, "topics", "1000,10000:256", "file-per-topic cases: comma-separated TOPICS or TOPICS:AGG_MAX_OPEN_FILES")
	flag.IntVar(&c.catchUpN, "catchup-n", 600_000, "lines of backlog a central catches up on, against the edge that forwarded them (0 skips it)")
	flag.IntVar(&c.syncN, "sync-n", 2_000_000, "messages per peak run in the syncing run, which also repeats the rotation run per AGG_SYNC_INTERVAL (0 skips it)")
	flag.IntVar(&c.many, "many", 1000, "endpoints (and as many connecting publishers) in the many-publishers run (0 skips it)")
	flag.IntVar(&c.manyRate, "many-rate", 10, "messages a second from each publisher in the many-publishers run")
	// libzmq's memory for a connection grows until about 512 messages have
	// passed (two chunks of its message pipe, 256 messages each), 51 s at
	// 10 msg/s: a shorter run reports less than a daemon comes to use.
	flag.DurationVar(&c.manyDur, "many-dur", 60*time.Second, "length of the many-publishers load")
	flag.DurationVar(&c.idleDur, "idle-dur", 10*time.Second, "how long idle CPU is measured in the many-publishers run")
	flag.StringVar(&c.only, "only", "", "run only one part: peak, rotate, latency, downcase, many, forward, catchup, sync, topics or read")
	flag.Parse()
	if *smoke {
		only := c.only
		c = smokeConfig()
		c.only = only
	} else {
		c.ns, c.ps = ints(ns), ints(ps)
		var err error
		if c.topicsCases, err = parseTopicsCases(topics); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -topics:", err)
			os.Exit(2)
		}
	}
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func smokeConfig() config {
	return config{runs: 1, size: 100, ns: []int{5000}, ps: []int{1, 2}, rotateN: 30000, rotateMB: 1,
		latRate: 2000, latDur: 500 * time.Millisecond, wrkDur: time.Second, wrkThreads: 1, wrkConns: 4,
		forwardN: 20_000, catchUpN: 20_000, topicsN: 20_000, readN: 20_000, topicsCases: []topicsCase{{topics: 100}, {topics: 1000, open: 16}}, syncN: 5000, many: 50, manyRate: 10, manyDur: time.Second, idleDur: time.Second}
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// run executes the benchmark and prints one table. It returns an error when
// any run lost, duplicated or garbled a message.
func run(c config, out io.Writer) error {
	if c.size < headerLen {
		return fmt.Errorf("message size must be at least %d", headerLen)
	}
	// Thousands of publishers live in this process: raise the default
	// context's socket limit before its first socket.
	zmq.SetMaxSockets(3*c.many + 1024)
	dir, err := os.MkdirTemp("", "bench-bin")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins, err := build(dir)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	// The daemon's -version names the libzmq it runs with, which decides
	// much of its memory per publisher.
	version, _ := exec.Command(bins.aggregator, "-version").Output()
	fmt.Fprintf(out, "aggregator benchmark  %s  %s  %d CPUs  %s  %d-byte messages\n%s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), cpuModel(), c.size, bytes.TrimSpace(version))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	if c.only == "" || c.only == "peak" || c.only == "rotate" {
		fmt.Fprintln(tw, "case\tdaemon msg/s\treference msg/s\tratio\tdaemon CPU s\tCPU µs/msg\tpeak RSS MiB\tmissing\tdup\tout of order\t")
	}
	var failures []string
	check := func(name string, t tally) {
		if !t.ok() {
			failures = append(failures, fmt.Sprintf("%s: %s", name, t))
		}
	}

	if c.only == "" || c.only == "peak" {
		for _, n := range c.ns {
			for _, p := range c.ps {
				name := fmt.Sprintf("peak N=%s P=%d", short(n), p)
				var ds, rs []sample
				for range c.runs {
					// Alternate daemon and reference so drift hits both alike.
					r, err := runReference(bins, p, n, c.size)
					if err != nil {
						return fmt.Errorf("%s reference: %w", name, err)
					}
					check(name+" reference", r.t)
					rs = append(rs, r)
					d, err := runDaemonPeak(bins, p, n, c.size, nil)
					if err != nil {
						return fmt.Errorf("%s daemon: %w", name, err)
					}
					check(name, d.t)
					ds = append(ds, d)
				}
				d, r := median(ds), median(rs)
				fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%d\t%d\t\n", name,
					d.rate(n), r.rate(n), d.rate(n)/r.rate(n), d.cpu, d.cpu/float64(n)*1e6,
					float64(d.rss)/(1<<20), d.t.missing, d.t.duplicated, d.t.outOfOrder)
			}
		}
	}
	if (c.only == "" || c.only == "rotate") && c.rotateN > 0 {
		p := 1
		for _, codec := range []string{"gzip", "zstd"} {
			name := fmt.Sprintf("rotate %dMB+%s N=%s", c.rotateMB, codec, short(c.rotateN))
			// Alternate reference and daemon, as for the peak cases.
			r, err := runReference(bins, p, c.rotateN, c.size)
			if err != nil {
				return fmt.Errorf("%s reference: %w", name, err)
			}
			d, rotations, err := runDaemonRotating(bins, p, c.rotateN, c.size, c.rotateMB, codec, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			check(name, d.t)
			fmt.Fprintf(tw, "%s (%d files)\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%d\t%d\t\n", name, rotations+1,
				d.rate(c.rotateN), r.rate(c.rotateN), d.rate(c.rotateN)/r.rate(c.rotateN), d.cpu, d.cpu/float64(c.rotateN)*1e6,
				float64(d.rss)/(1<<20), d.t.missing, d.t.duplicated, d.t.outOfOrder)
		}
	}
	tw.Flush()

	if (c.only == "" || c.only == "latency") && c.latRate > 0 {
		lat, t, err := runLatency(bins, c.latRate, c.latDur, c.size)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		check("latency", t)
		fmt.Fprintf(out, "\nlatency at %d msg/s for %s (send to line in file, %d messages): p50 %s  p90 %s  p99 %s  max %s  (missing %d, dup %d)\n",
			c.latRate, c.latDur, len(lat), us(percentile(lat, 0.5)), us(percentile(lat, 0.9)),
			us(percentile(lat, 0.99)), us(percentile(lat, 1)), t.missing, t.duplicated)
	}
	if (c.only == "" || c.only == "downcase") && !c.skipDC {
		r, err := runDowncase(bins, c.wrkThreads, c.wrkConns, c.wrkDur)
		if err != nil {
			return fmt.Errorf("downcase: %w", err)
		}
		fmt.Fprintf(out, "\ndowncase under wrk -t%d -c%d -d%s: %.0f req/s, p99 %s, %d requests, %d published, %d counted by a subscriber, %d non-2xx\n",
			c.wrkThreads, c.wrkConns, c.wrkDur, r.rps, us(r.p99), r.requests, r.published, r.counted, r.non2xx)
		// wrk stops counting at the deadline with up to one request per
		// connection still in flight; the server answers and publishes those.
		if inFlight := r.published - r.requests; inFlight < 0 || inFlight > c.wrkConns || r.counted != r.published || r.non2xx != 0 {
			failures = append(failures, "downcase: not every request was published and counted")
		}
	}
	if (c.only == "" || c.only == "forward") && c.forwardN > 0 {
		for _, replicas := range []int{1, 3} {
			written, forwarded, err := runForward(bins, c.forwardN, replicas, c.size)
			if err != nil {
				return fmt.Errorf("forward R%d: %w", replicas, err)
			}
			fmt.Fprintf(out, "\nforward to JetStream, %d server(s), %d replica(s), N=%s: written at %.0f lines/s, all acknowledged after %s (%.0f lines/s)\n",
				replicas, replicas, short(c.forwardN), float64(c.forwardN)/written.Seconds(), forwarded.Round(time.Millisecond), float64(c.forwardN)/forwarded.Seconds())
		}
	}
	if (c.only == "" || c.only == "catchup") && c.catchUpN > 0 {
		r, err := runCatchUp(bins, c.catchUpN, c.size, false)
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		check("catch-up", r.t)
		edge, central := float64(c.catchUpN)/r.edge.Seconds(), float64(c.catchUpN)/r.central.Seconds()
		fmt.Fprintf(out, "\ncentral catching up on a backlog of %s lines: the edge forwarded them at %.0f lines/s, the central wrote them at %.0f lines/s from its start: %.2fx (missing %d, dup %d)\n",
			short(c.catchUpN), edge, central, central/edge, r.t.missing, r.t.duplicated)
		p, err := runCatchUp(bins, c.catchUpN, c.size, true)
		if err != nil {
			return fmt.Errorf("catch-up, a file per edge: %w", err)
		}
		check("catch-up, a file per edge", p.t)
		edgeP, centralP := float64(c.catchUpN)/p.edge.Seconds(), float64(c.catchUpN)/p.central.Seconds()
		fmt.Fprintf(out, "the same into {edge}.log: the edge at %.0f lines/s, the central at %.0f lines/s: %.2fx the edge, %.2fx the one-file central (missing %d, dup %d)\n",
			edgeP, centralP, centralP/edgeP, centralP/central, p.t.missing, p.t.duplicated)
	}
	if (c.only == "" || c.only == "read") && c.readN > 0 {
		if err := runRead(bins, c.readN, c.size, max(1, c.readN*c.size/10_000_000), out); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		// A day of 24 hourly backups, in seconds: 24 s at 40,000 lines/s.
		seconds := min(24, max(3, c.readN/40_000))
		if err := runWindow(bins, 40_000, seconds, c.size, out); err != nil {
			return fmt.Errorf("read window: %w", err)
		}
	}
	if (c.only == "" || c.only == "sync") && c.syncN > 0 {
		if err := runSyncCost(bins, c, out, check); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	if (c.only == "" || c.only == "topics") && c.topicsN > 0 {
		if err := runTopicsCases(bins, c, out, check); err != nil {
			return fmt.Errorf("topics: %w", err)
		}
	}
	if (c.only == "" || c.only == "many") && c.many > 0 {
		r, err := runMany(bins, c.many, c.manyRate, c.manyDur, c.idleDur, c.size)
		if err != nil {
			return fmt.Errorf("many publishers: %w", err)
		}
		check("many publishers", r.t)
		fmt.Fprintf(out, "\n%d connect endpoints, nobody listening: ready in %s; after %s, CPU %.2f%% of a core over %s, %d threads\n",
			r.n, r.absentReady.Round(time.Millisecond), c.idleDur, 100*r.absentCPU, c.idleDur, r.absentThreads)
		fmt.Fprintf(out, "%d publishers that bind + %d that connect: ready in %s; %v connect endpoints up, %v publishers on the bind endpoint; silent: CPU %.2f%% of a core over %s, %d threads, RSS %.1f MiB\n",
			r.n, r.n, r.ready.Round(time.Millisecond), r.connected, r.onBind, 100*r.silentCPU, c.idleDur, r.silentThreads, float64(r.silentRSS)/(1<<20))
		fmt.Fprintf(out, "  the %d that bind at %d msg/s each for %s: CPU %.1f%% of a core, peak RSS %.1f MiB (%.1f MiB of it the mapped binary and libraries); then the %d that connect: CPU %.1f%%, peak RSS %.1f MiB\n",
			r.n, c.manyRate, c.manyDur, 100*r.connectCPU, float64(r.connectRSS)/(1<<20), float64(r.connectFiles)/(1<<20), r.n, 100*r.bindCPU, float64(r.rss)/(1<<20))
		fmt.Fprintf(out, "  %d sent, %d delivered, %d missing, %d duplicated\n", 2*r.n*r.each, r.t.received, r.t.missing, r.t.duplicated)
	}
	if len(failures) > 0 {
		return fmt.Errorf("messages lost or garbled:\n%s", strings.Join(failures, "\n"))
	}
	return nil
}

// median picks the run with the median elapsed time.
func median(s []sample) sample {
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b sample) int { return int(a.elapsed - b.elapsed) })
	return s[len(s)/2]
}

func short(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return ""
}
