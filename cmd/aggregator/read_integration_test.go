package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"aggregator/internal/eventually"
	"aggregator/internal/sink"
)

// readCmd runs `aggregator read` and returns its output, stderr and exit
// status.
func readCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(aggBin, append([]string{"read"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), exitCode(err)
}

// sentMessage is what the test published: its frames.
type sentMessage [][]byte

// testMessages are multipart and single-frame messages, text and binary:
// every byte value appears in some frame.
func testMessages(n int) []sentMessage {
	var msgs []sentMessage
	for i := range n {
		switch i % 4 {
		case 0:
			msgs = append(msgs, sentMessage{[]byte(fmt.Sprintf("plain line %d with spaces", i))})
		case 1:
			msgs = append(msgs, sentMessage{[]byte("shop.INFO"), []byte(fmt.Sprintf("order %d placed", i))})
		case 2:
			bin := make([]byte, 64)
			for k := range bin {
				bin[k] = byte(i*7 + k)
			}
			msgs = append(msgs, sentMessage{[]byte("bin"), bin, []byte("tab\there\nnewline")})
		case 3:
			msgs = append(msgs, sentMessage{[]byte("cart.DEBUG"), []byte(fmt.Sprintf("cart %d é ü \\ %s", i, strings.Repeat("p", 200)))})
		}
	}
	return msgs
}

// parseRaw reads --output raw: "TIME N" then N frames, each its length, a
// newline, its bytes and a newline.
func parseRaw(t *testing.T, out string) (stamps []string, msgs []sentMessage) {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(out))
	for {
		head, err := r.ReadString('\n')
		if err != nil {
			return stamps, msgs
		}
		stamp, count, _ := strings.Cut(strings.TrimSuffix(head, "\n"), " ")
		n, err := strconv.Atoi(count)
		if err != nil {
			t.Fatalf("raw header %q", head)
		}
		var m sentMessage
		for range n {
			l, _ := r.ReadString('\n')
			size, err := strconv.Atoi(strings.TrimSuffix(l, "\n"))
			if err != nil {
				t.Fatalf("raw frame length %q", l)
			}
			f := make([]byte, size+1)
			if _, err := io.ReadFull(r, f); err != nil || f[size] != '\n' {
				t.Fatalf("raw frame of %d bytes: %v", size, err)
			}
			m = append(m, f[:size])
		}
		stamps, msgs = append(stamps, stamp), append(msgs, m)
	}
}

// TestReadBack: the daemon writes text and JSON logs through rotations
// with zstd and gzip; `aggregator read` gives back every message's exact
// frames in order across backups and the live file, and each filter and
// output does what it says; a cut backup is an error naming it while the
// other files are still read.
func TestReadBack(t *testing.T) {
	skipShort(t)
	msgs := testMessages(24_000)
	logs := map[string]string{}
	for _, format := range []string{"text", "json"} {
		_, bindEP := publishers(t)
		codec := map[string]string{"text": "zstd", "json": "gzip"}[format]
		logFile := filepath.Join(t.TempDir(), "subscriber.log")
		logs[format] = logFile
		p := startAgg(t, map[string]string{"AGG_BIND": bindEP, "AGG_LOG_FILE": logFile, "AGG_FORMAT": format,
			"AGG_MAX_SIZE_MB": "1", "AGG_COMPRESS": codec})
		pub := connectTo(t, bindEP)
		subscribed(t, pub)
		for i, m := range msgs {
			if err := pub.Send(m...); err != nil {
				t.Fatal(err)
			}
			if i%500 == 499 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		p.waitMetric("aggregator_lines_written_total", float64(len(msgs)))
		p.waitMetric("aggregator_backups_compressed_total", 2)
		p.stop()

		out, stderr, code := readCmd(t, "--output", "raw", logFile)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, stderr)
		}
		stamps, got := parseRaw(t, out)
		if len(got) != len(msgs) {
			t.Fatalf("%s: read %d messages back, sent %d", format, len(got), len(msgs))
		}
		for i := range msgs {
			want := msgs[i]
			if format == "json" && len(want) > 2 {
				// A JSON line joins the frames after the topic by TAB: a
				// TAB inside a frame cannot be told from the separator.
				want = sentMessage{want[0]}
				want = append(want, bytes.Split(bytes.Join(msgs[i][1:], []byte{'\t'}), []byte{'\t'})...)
			}
			if !slices.EqualFunc(got[i], want, bytes.Equal) {
				t.Fatalf("%s: message %d read back as %q, sent %q", format, i, got[i], msgs[i])
			}
		}
		files, _ := sink.Files(logFile)
		t.Logf("%s: %d messages from %d files (%s backups) read back exactly", format, len(got), len(files), codec)

		// --output message: the frames after the topic, escapes decoded.
		out, _, _ = readCmd(t, "--output", "message", "-n", "2", logFile)
		want := string(bytes.Join(msgs[len(msgs)-2][1:], []byte{'\t'})) + "\n" + string(msgs[len(msgs)-1][1]) + "\n"
		if out != want {
			t.Errorf("%s: --output message -n 2 gave %q, want %q", format, out, want)
		}
		// --topic and --grep.
		out, _, _ = readCmd(t, "--topic", "shop", "--output", "message", logFile)
		if n := strings.Count(out, "\n"); n != len(msgs)/4 || !strings.HasPrefix(out, "order 1 placed\n") {
			t.Errorf("%s: --topic shop gave %d records, want %d", format, n, len(msgs)/4)
		}
		out, _, _ = readCmd(t, "--grep", "order 4441 placed", "--output", "message", logFile)
		if out != "order 4441 placed\n" {
			t.Errorf("%s: --grep gave %q", format, out)
		}
		out, _, _ = readCmd(t, "--grep", "tab\there", logFile)
		if n := strings.Count(out, "\n"); n != len(msgs)/4 {
			t.Errorf("%s: --grep of a TAB in a frame gave %d records, want %d", format, n, len(msgs)/4)
		}
		// --since (inclusive) and --until (exclusive), by the stored times.
		from, to := stamps[1000], stamps[2000]
		out, _, _ = readCmd(t, "--since", from, "--until", to, "--output", "raw", logFile)
		_, window := parseRaw(t, out)
		lo, hi := 1000, 2000
		for lo > 0 && stamps[lo-1] == from {
			lo--
		}
		for hi > 0 && stamps[hi-1] == to {
			hi--
		}
		if len(window) != hi-lo || !slices.EqualFunc(window[0], msgs[lo], bytes.Equal) {
			t.Errorf("%s: --since %s --until %s gave %d records, want %d", format, from, to, len(window), hi-lo)
		}
		// --endpoint: JSON lines record it, text lines do not.
		out, _, _ = readCmd(t, "--endpoint", bindEP, logFile)
		if n, want := strings.Count(out, "\n"), map[string]int{"json": len(msgs), "text": 0}[format]; n != want {
			t.Errorf("%s: --endpoint gave %d records, want %d", format, n, want)
		}
		// --output json of either format has the daemon's JSON schema.
		out, _, _ = readCmd(t, "--output", "json", "-n", "1", logFile)
		if !strings.HasPrefix(out, `{"time":"`) || !strings.Contains(out, `"topic":"cart.DEBUG"`) {
			t.Errorf("%s: --output json gave %q", format, out)
		}
	}

	// Both logs merged by time: every record of each, in time order.
	out, _, code := readCmd(t, "--output", "raw", logs["text"], logs["json"])
	stamps, got := parseRaw(t, out)
	if code != 0 || len(got) != 2*len(msgs) || !slices.IsSorted(stamps) {
		t.Errorf("two logs merged: exit %d, %d records (want %d), in time order %v", code, len(got), 2*len(msgs), slices.IsSorted(stamps))
	}

	// A user who may only read the log directory, as group adm on
	// Debian: nothing is written, everything is read.
	if setpriv, err := exec.LookPath("setpriv"); err == nil && os.Getuid() == 0 {
		dir := filepath.Dir(logs["text"])
		files, _ := sink.Files(logs["text"])
		for _, f := range append(files, dir) {
			os.Chown(f, 0, 4)
		}
		os.Chmod(dir, 0o750)
		os.Chmod(filepath.Dir(dir), 0o755) // the test's own directory, to get there
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=4", "--clear-groups", aggBin, "read", "--output", "raw", logs["text"])
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if _, got := parseRaw(t, string(out)); err != nil || len(got) != len(msgs) {
			t.Errorf("read as a user of group adm only: %v, %d records of %d: %s", err, len(got), len(msgs), errb.String())
		}
	}

	// A cut backup of each codec: an error naming it, the rest read.
	for format, logFile := range logs {
		files, _ := sink.Files(logFile)
		cut := files[0]
		data, err := os.ReadFile(cut)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		out, stderr, code := readCmd(t, logFile)
		if code != 1 || !strings.Contains(stderr, filepath.Base(cut)) {
			t.Errorf("%s: a cut %s: exit %d, stderr %q", format, filepath.Ext(cut), code, stderr)
		}
		if !strings.Contains(out, "cart 23999") {
			t.Errorf("%s: the files after the cut one were not read", format)
		}
	}

	// -help lists every flag.
	_, help, code := readCmd(t, "-help")
	for _, flag := range []string{"-since", "-until", "-topic", "-endpoint", "-edge", "-grep", "-n", "-output", "-f", "-follow"} {
		if code != 0 || !strings.Contains(help, "  "+flag+" ") && !strings.Contains(help, "  "+flag+"\n") && !strings.Contains(help, "  "+flag+"\t") {
			t.Errorf("read -help (exit %d) does not list %s:\n%s", code, flag, help)
		}
	}

	// Usage errors.
	for _, args := range [][]string{{}, {"--since", "yesterday", logs["text"]}, {"--output", "xml", logs["text"]}, {"--since", "now", "--until", "-1h", logs["text"]}} {
		if _, stderr, code := readCmd(t, args...); code != 2 || stderr == "" {
			t.Errorf("read %q: exit %d, stderr %q; want 2 and why", args, code, stderr)
		}
	}
}

// TestReadFollow: `aggregator read -f` started before the daemon writes
// prints every line, across three rotations, none missing or twice.
func TestReadFollow(t *testing.T) {
	skipShort(t)
	_, bindEP := publishers(t)
	logFile := filepath.Join(t.TempDir(), "subscriber.log")
	p := startAgg(t, map[string]string{"AGG_BIND": bindEP, "AGG_LOG_FILE": logFile, "AGG_MAX_SIZE_MB": "1", "AGG_COMPRESS": "zstd"})
	pub := connectTo(t, bindEP)
	subscribed(t, pub)
	pub.Send([]byte("before the reader"))
	p.waitMetric("aggregator_lines_written_total", 1)

	follow := exec.Command(aggBin, "read", "-f", logFile)
	var out syncBuffer
	follow.Stdout = &out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	const n = 40_000 // about 4.4 MB: four files
	pad := strings.Repeat("f", 80)
	for i := range n {
		pub.Send([]byte(fmt.Sprintf("line %d %s", i, pad)))
		if i%500 == 499 {
			time.Sleep(15 * time.Millisecond)
		}
	}
	p.waitMetric("aggregator_lines_written_total", n+1)
	if r := p.metric(`aggregator_rotations_total{reason="size"}`); r < 3 {
		t.Fatalf("%v rotations, want 3", r)
	}
	eventually.Within(t, 10*time.Second, "the reader printed every line", func() bool {
		return strings.Count(out.String(), "\n") >= n+1
	})
	time.Sleep(300 * time.Millisecond) // anything more would be twice
	sameLines(t, []byte(out.String()), logBytes(t, logFile))

	// logrotate's way ("create"): the live file renamed to a name of its
	// own and a new empty one made in its place, which the reader turns
	// to; lines still written to the old one until SIGHUP, then to the
	// new one.
	renamed := logFile + ".1"
	if err := os.Rename(logFile, renamed); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logFile, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the reader sees the new file
	for i := range 2000 {
		pub.Send([]byte(fmt.Sprintf("before the reopen %d %s", i, pad)))
	}
	p.waitMetric("aggregator_lines_written_total", n+1+2000)
	p.signal(syscall.SIGHUP)
	p.waitMetric("aggregator_reopens_total", 1)
	for i := range 2000 {
		pub.Send([]byte(fmt.Sprintf("after the reopen %d %s", i, pad)))
	}
	p.waitMetric("aggregator_lines_written_total", n+1+4000)
	eventually.Within(t, 10*time.Second, "the reader printed the lines around the reopen", func() bool {
		return strings.Count(out.String(), "\n") >= n+1+4000
	})
	time.Sleep(300 * time.Millisecond)
	follow.Process.Signal(os.Interrupt)
	follow.Wait()
	printed := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		printed[line]++
	}
	all := string(logBytes(t, logFile))
	if data, err := os.ReadFile(renamed); err == nil {
		all = string(data) + all
	}
	wantLines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	for _, line := range wantLines {
		if printed[line] != 1 {
			t.Fatalf("%q printed %d times", line, printed[line])
		}
	}
	if len(printed) != len(wantLines) {
		t.Fatalf("printed %d distinct lines, the files hold %d", len(printed), len(wantLines))
	}
	t.Logf("%d lines followed across %v rotations and a rename with SIGHUP", len(wantLines), p.metric(`aggregator_rotations_total{reason="size"}`))
}
