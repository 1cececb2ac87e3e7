package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// topicsCase is one run of a file per source: topics topics, each message
// to the file of its topic, with at most open files open (0: the daemon's
// default).
type topicsCase struct {
	topics, open int
}

// parseTopicsCases reads -topics: "1000,10000:256" is 1,000 topics with
// the default descriptors, then 10,000 with 256.
func parseTopicsCases(s string) ([]topicsCase, error) {
	var cases []topicsCase
	for _, f := range strings.Split(s, ",") {
		topics, open, _ := strings.Cut(strings.TrimSpace(f), ":")
		var tc topicsCase
		var err error
		if tc.topics, err = strconv.Atoi(topics); err != nil || tc.topics < 1 {
			return nil, fmt.Errorf("%q: want TOPICS or TOPICS:OPEN_FILES", f)
		}
		if open != "" {
			if tc.open, err = strconv.Atoi(open); err != nil || tc.open < 1 {
				return nil, fmt.Errorf("%q: want TOPICS or TOPICS:OPEN_FILES", f)
			}
		}
		cases = append(cases, tc)
	}
	return cases, nil
}

// runTopicsCases measures a file per source against one file in the same
// run: n messages from one publisher, spread over the topics in turn, and
// the time until every line is written, once each topic's file exists
// (the time to create them is reported apart: on a file system where
// thousands of files were just deleted, as a benchmark leaves it, ext4
// takes up to a millisecond to create one).
func runTopicsCases(bins binaries, c config, out io.Writer, check func(string, tally)) error {
	fmt.Fprintf(out, "\na file per topic ({topic}.log), one publisher, %s messages:\n", short(c.topicsN))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tmsg/s\tratio to one file\tpeak RSS MiB\tfiles\tevictions\tfirst line of each in ms\t")
	var one float64
	for _, tc := range append([]topicsCase{{topics: 0}}, c.topicsCases...) {
		var ss []sample
		var files, evictions int
		var created []time.Duration
		for range c.runs {
			s, cr, f, e, err := runTopics(bins, c.topicsN, c.size, tc)
			if err != nil {
				return fmt.Errorf("%d topics: %w", tc.topics, err)
			}
			check(fmt.Sprintf("%d topics", tc.topics), s.t)
			ss = append(ss, s)
			created = append(created, cr)
			files, evictions = f, e
		}
		s := median(ss)
		// The rate is of the messages after the first of each topic.
		rate := s.rate(c.topicsN - max(tc.topics, 1))
		name := "one file"
		if tc.topics > 0 {
			name = fmt.Sprintf("%s topics", short(tc.topics))
			if tc.open > 0 {
				name += fmt.Sprintf(", AGG_MAX_OPEN_FILES=%d", tc.open)
			}
		} else {
			one = rate
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.1f\t%d\t%d\t%.0f\t\n", name, rate, rate/one, float64(s.rss)/(1<<20), files, evictions,
			float64(medianDuration(created))/float64(time.Millisecond))
	}
	return tw.Flush()
}

// runTopics sends n messages with tc.topics topics in turn (none: one
// file, the messages still multipart) and checks every line once.
func runTopics(bins binaries, n, size int, tc topicsCase) (s sample, created time.Duration, files, evictions int, err error) {
	pubs, err := newPublishers(1)
	if err != nil {
		return s, 0, 0, 0, err
	}
	defer pubs.close()
	dir, err := os.MkdirTemp("", "bench-topics")
	if err != nil {
		return s, 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	env := map[string]string{
		"AGG_CONNECT":     pubs.endpoints()[0],
		"AGG_MAX_SIZE_MB": "100000",
		"AGG_MAX_FILES":   "100000",
		"AGG_LOG_FILE":    filepath.Join(dir, "{topic}.log"),
	}
	if tc.topics == 0 {
		env["AGG_LOG_FILE"] = filepath.Join(dir, "one.log")
	}
	if tc.open > 0 {
		env["AGG_MAX_OPEN_FILES"] = fmt.Sprint(tc.open)
	}

	d, err := startDaemon(bins.aggregator, env)
	if err != nil {
		return s, 0, 0, 0, err
	}
	defer d.cleanup()
	defer d.kill()
	if err := pubs.waitSubscribed(); err != nil {
		return s, 0, 0, 0, err
	}
	topics := make([][]byte, max(tc.topics, 1))
	for i := range topics {
		topics[i] = []byte(fmt.Sprintf("svc%05d.INFO", i))
	}
	pid := d.cmd.Process.Pid
	var profiled <-chan struct{}
	if cpuProfile != "" && tc.topics > 0 && tc.open == 0 {
		// -cpuprofile: the case of many open files, once the files exist
		// (creating a thousand takes most of the first second here).
		ch := make(chan struct{})
		profiled = ch
		go func() { time.Sleep(1500 * time.Millisecond); <-profileDaemon(d); close(ch) }()
	}
	buf := make([]byte, 0, size)
	send := func(from, to int) error {
		for seq := from; seq < to; seq++ {
			buf = formatMsg(buf, 0, seq, time.Now().UnixNano(), size)
			if err := pubs[0].Send(topics[seq%len(topics)], buf); err != nil {
				return err
			}
		}
		return waitFor(5*time.Minute, 2*time.Millisecond, func() bool {
			return d.metric("aggregator_lines_written_total") >= float64(to)
		})
	}
	// The peak is the steady state: a message per topic first, so that
	// the files exist (how long creating them took is reported apart).
	warm := len(topics)
	start := time.Now()
	if err := send(0, warm); err != nil {
		return s, 0, 0, 0, fmt.Errorf("daemon wrote %v of the first %d lines", d.metric("aggregator_lines_written_total"), warm)
	}
	created = time.Since(start)
	start = time.Now()
	if err := send(warm, n); err != nil {
		return s, 0, 0, 0, fmt.Errorf("daemon wrote %v of %d lines", d.metric("aggregator_lines_written_total"), n)
	}
	s.elapsed = time.Since(start)
	s.rss, _ = peakRSS(pid)
	if profiled != nil {
		<-profiled
	}
	files = int(d.metric("aggregator_files"))
	evictions = int(d.metric(`aggregator_files_closed_total{reason="evicted"}`))
	if err := d.stop(); err != nil {
		return s, created, files, evictions, err
	}
	// Every line once: each file in its own order, so order across files
	// is not checked.
	v := newVerifier(1, n)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return s, created, files, evictions, err
	}
	for _, e := range entries {
		// Each file by itself: there are no backups, and listing a
		// directory of 10,000 files per file would take minutes.
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return s, created, files, evictions, err
		}
		for line := range bytes.Lines(data) {
			line = bytes.TrimSuffix(line, []byte{'\n'})
			if i := bytes.IndexByte(line, '\t'); i >= 0 {
				line = line[i+1:]
			}
			v.line(line)
		}
	}
	s.t = v.result()
	s.t.outOfOrder = 0
	return s, created, files, evictions, nil
}
