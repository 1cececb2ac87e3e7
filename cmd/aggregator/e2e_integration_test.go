package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"aggregator/internal/curve"
	"aggregator/internal/eventually"
	"aggregator/internal/zmqtest"
)

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the daemon under load")
	}
}

func TestEndToEndPayloads(t *testing.T) {
	bound, bindEP := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_BIND": bindEP})
	conn := connectTo(t, bindEP)
	subscribed(t, bound, conn)

	sends := [][]string{
		{"lower case of HeLLo is hello"},
		{"two\nlines\r\n"},
		{"ends twice\n\n"},
		{"bin\x00\xff"},
		{""},
		{"app.INFO", "multipart message"},
	}
	for _, s := range sends {
		var frames [][]byte
		for _, f := range s {
			frames = append(frames, []byte(f))
		}
		if err := bound.Send(frames...); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Send([]byte("from a connecting publisher")); err != nil {
		t.Fatal(err)
	}
	p.waitMetric("aggregator_lines_written_total", 7)
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	seen, _ := readMessages(t, p.log)
	for _, want := range []string{
		"lower case of HeLLo is hello",
		`two\nlines`, // one trailing newline ends the message (AGG_STRIP_NEWLINE)
		`ends twice\n`,
		`bin\x00\xff`,
		"",
		"app.INFO\tmultipart message",
		"from a connecting publisher",
	} {
		if seen[want] != 1 {
			t.Errorf("line %q found %d times; all: %v", want, seen[want], seen)
		}
	}
}

// TestKeepNewline: AGG_STRIP_NEWLINE=false writes a message as it came.
func TestKeepNewline(t *testing.T) {
	bound, _ := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_STRIP_NEWLINE": "false"})
	subscribed(t, bound)
	if err := bound.Send([]byte("kept\r\n")); err != nil {
		t.Fatal(err)
	}
	p.waitMetric("aggregator_lines_written_total", 1)
	p.stop()
	if seen, _ := readMessages(t, p.log); seen[`kept\r\n`] != 1 {
		t.Errorf("lines: %v", seen)
	}
}

func TestCleanStopUnderLoadLosesNothing(t *testing.T) {
	skipShort(t)
	bound, bindEP := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_BIND": bindEP})
	conn := connectTo(t, bindEP)
	subscribed(t, bound, conn)
	l1 := startLoad(t, bound, "a", 300_000, 1000, time.Millisecond)
	l2 := startLoad(t, conn, "b", 300_000, 1000, time.Millisecond)
	p.waitMetric("aggregator_lines_written_total", 20_000)

	start := time.Now()
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	t.Logf("stopped in %s", time.Since(start))
	l1.wait(t)
	l2.wait(t)

	received, written, dropped := p.totals()
	seen, _ := readMessages(t, p.log)
	lines := 0
	for msg, c := range seen {
		if c != 1 {
			t.Fatalf("%q written %d times", msg, c)
		}
		lines++
	}
	if received == 0 || received != written || written != lines || dropped != 0 {
		t.Fatalf("received %d, written %d, lines in file %d, dropped %d", received, written, lines, dropped)
	}
}

func TestRotationUnderLoadKeepsEveryMessageOnce(t *testing.T) {
	skipShort(t)
	bound, bindEP := publishers(t)
	p := startAgg(t, map[string]string{
		"AGG_CONNECT":      bound.Endpoint,
		"AGG_BIND":         bindEP,
		"AGG_MAX_SIZE_MB":  "1",
		"AGG_ROTATE_EVERY": "1s",
		"AGG_MAX_BACKUPS":  "0",
		"AGG_COMPRESS":     "true",
	})
	conn := connectTo(t, bindEP)
	subscribed(t, bound, conn)
	const n = 60_000 // 2 x 60k x ~95 bytes: about 11 size rotations, over ~2s
	l1 := startLoad(t, bound, "a", n, 500, 8*time.Millisecond)
	l2 := startLoad(t, conn, "b", n, 500, 8*time.Millisecond)
	l1.wait(t)
	l2.wait(t)
	p.waitMetric("aggregator_lines_written_total", 2*n)
	// The load spans more than a second, so a boundary has passed or is
	// about to (the file is not empty, so it will rotate).
	p.waitMetric(`aggregator_rotations_total{reason="time"}`, 1)
	if size := p.metric(`aggregator_rotations_total{reason="size"}`); size < 5 {
		t.Errorf("size rotations %v, want at least 5", size)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	seen, files := readMessages(t, p.log)
	expectAll(t, seen, "a", n)
	expectAll(t, seen, "b", n)
	if len(seen) != 2*n {
		t.Fatalf("%d distinct lines, want %d", len(seen), 2*n)
	}
	gz := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".gz") {
			gz++
		}
	}
	if gz == 0 || gz != len(files)-1 {
		t.Errorf("%d of %d backups compressed: %v", gz, len(files)-1, files)
	}
}

func TestReopenOnSIGHUPUnderLoad(t *testing.T) {
	skipShort(t)
	bound, _ := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint})
	subscribed(t, bound)
	const n = 100_000
	l := startLoad(t, bound, "h", n, 1000, 2*time.Millisecond)
	p.waitMetric("aggregator_lines_written_total", 20_000)
	moved := p.log + ".1"
	if err := os.Rename(p.log, moved); err != nil { // what logrotate does
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	l.wait(t)
	p.waitMetric("aggregator_lines_written_total", n)
	if got := p.metric("aggregator_reopens_total"); got != 1 {
		t.Errorf("reopens %v, want 1", got)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	before, _ := readMessages(t, moved)
	after, _ := readMessages(t, p.log)
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("moved file has %d lines, new file %d", len(before), len(after))
	}
	for k, v := range after {
		before[k] += v
	}
	expectAll(t, before, "h", n)
}

func TestPublisherRestartIsPickedUp(t *testing.T) {
	skipShort(t)
	bound, _ := publishers(t)
	ep := bound.Endpoint
	p := startAgg(t, map[string]string{"AGG_CONNECT": ep})
	subscribed(t, bound)
	startLoad(t, bound, "first", 100, 0, 0).wait(t)
	p.waitMetric("aggregator_lines_written_total", 100)
	bound.Close()

	again := rebind(t, ep)
	subscribed(t, again)
	startLoad(t, again, "second", 100, 0, 0).wait(t)
	p.waitMetric("aggregator_lines_written_total", 200)
	p.stop()
	seen, _ := readMessages(t, p.log)
	expectAll(t, seen, "first", 100)
	expectAll(t, seen, "second", 100)
}

// TestBadConfigurationIsReportedWhole: format errors, bad values and
// problems on the machine (a log directory that cannot be, a missing key
// file) all come out in one round, at start and with -check-config.
func TestBadConfigurationIsReportedWhole(t *testing.T) {
	httpAddr := freeAddr(t)
	env := map[string]string{
		"AGG_CONNECT":               "udp://127.0.0.1:1,tcp://127.0.0.1:4444",
		"AGG_MAX_SIZE_MB":           "-1",
		"AGG_COMPRESS":              "maybe",
		"AGG_FLUSH_INTERVAL":        "fast",
		"AGG_FORMAT":                "xml",
		"AGG_LOG_FILE":              "/proc/forbidden/x.log",
		"AGG_CURVE_SECRET_KEY_FILE": "/nonexistent.secret",
		"AGG_HTTP_ADDR":             httpAddr,
	}
	want := []string{"AGG_CONNECT", "AGG_MAX_SIZE_MB", "AGG_COMPRESS", "AGG_FLUSH_INTERVAL", "AGG_FORMAT", "AGG_LOG_FILE", "AGG_CURVE_SECRET_KEY_FILE"}
	for _, args := range [][]string{nil, {"-check-config"}} {
		cmd, stderr, _ := command(t, env, args...)
		err := cmd.Run()
		if code := exitCode(err); code != 78 {
			t.Fatalf("%v: exit status %d, want 78; stderr:\n%s", args, code, stderr)
		}
		out := stderr.String()
		for _, name := range want {
			if !strings.Contains(out, name) {
				t.Errorf("%v: stderr does not name %s:\n%s", args, name, out)
			}
		}
		if n := strings.Count(out, "\n"); n != len(want) {
			t.Errorf("%v: want one line per problem (%d), got %d:\n%s", args, len(want), n, out)
		}
	}
	if c, err := net.Dial("tcp", httpAddr); err == nil {
		c.Close()
		t.Error("HTTP port was bound despite the bad configuration")
	}
}

func TestCheckConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		code int
		want string
	}{
		{"good", map[string]string{"AGG_CONNECT": "tcp://127.0.0.1:4444"}, 0, "configuration OK"},
		{"missing directory", map[string]string{"AGG_CONNECT": "tcp://127.0.0.1:4444", "AGG_LOG_FILE": "/nonexistent/dir/subscriber.log"}, 78, "AGG_LOG_FILE"},
		{"no endpoint", map[string]string{}, 78, "no endpoint"},
		{"bad endpoint", map[string]string{"AGG_BIND": "tcp://127.0.0.1"}, 78, "AGG_BIND"},
		{"message too big for the file", map[string]string{"AGG_CONNECT": "tcp://127.0.0.1:1", "AGG_MAX_SIZE_MB": "1", "AGG_MAX_MESSAGE_BYTES": "1000000"}, 78, "AGG_MAX_MESSAGE_BYTES"},
		{"key file is no key", map[string]string{"AGG_BIND": "tcp://127.0.0.1:*", "AGG_CURVE_SECRET_KEY_FILE": "/etc/os-release"}, 78, "AGG_CURVE_SECRET_KEY_FILE"},
		{"key file missing", map[string]string{"AGG_BIND": "tcp://127.0.0.1:*", "AGG_CURVE_SECRET_KEY_FILE": "/nonexistent.secret"}, 78, "AGG_CURVE_SECRET_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, stderr, _ := command(t, tt.env, "-check-config")
			out, err := cmd.Output()
			if code := exitCode(err); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.code, stderr)
			}
			if all := string(out) + stderr.String(); !strings.Contains(all, tt.want) {
				t.Fatalf("output %q does not contain %q", all, tt.want)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	out, err := exec.Command(aggBin, "-help").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range knownVariables() {
		if !strings.Contains(string(out), v) {
			t.Errorf("-help does not list %s", v)
		}
	}
	out, err = exec.Command(aggBin, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "aggregator ") {
		t.Fatalf("-version: %q, %v", out, err)
	}
	// The daemon runs on Debian's shared libzmq5, which apt keeps patched.
	if !strings.Contains(string(out), "/libzmq.so.5") {
		t.Errorf("-version: %q, want it linked with Debian's shared libzmq.so.5", out)
	}
	if code := exitCode(exec.Command(aggBin, "-bogus").Run()); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
}

func TestReadyHealthyAndMetricsLint(t *testing.T) {
	bound, _ := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint})
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		resp, err := http.Get("http://" + p.http + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: run scripts/install-deps --test (Debian package prometheus)")
	}
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = resp.Body
	if out, err := lint.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestSystemdNotify(t *testing.T) {
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bound, _ := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "NOTIFY_SOCKET": sockPath, "WATCHDOG_USEC": "200000"})
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// The watchdog is pinged every 100 ms (half of WATCHDOG_USEC) while
	// the writer's loop turns.
	if got := read(); got != "WATCHDOG=1" {
		t.Fatalf("notification %q, want WATCHDOG=1", got)
	}
	p.signal(syscall.SIGTERM)
	for {
		got := read()
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("notification at stop %q, want STOPPING=1", got)
		}
	}
}

func TestJSONLinesAndOversize(t *testing.T) {
	bound, _ := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_FORMAT": "json", "AGG_MAX_MESSAGE_BYTES": "1000"})
	subscribed(t, bound)
	big := strings.Repeat("y", 5000)
	for _, frames := range [][]string{{"app.WARN", "disk\nalmost full"}, {big}} {
		var bs [][]byte
		for _, f := range frames {
			bs = append(bs, []byte(f))
		}
		if err := bound.Send(bs...); err != nil {
			t.Fatal(err)
		}
	}
	p.waitMetric("aggregator_lines_written_total", 2)
	if got := p.metric(`aggregator_messages_truncated_total{endpoint="` + bound.Endpoint + `"}`); got != 1 {
		t.Errorf("truncated metric %v, want 1", got)
	}
	p.stop()
	data, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), data)
	}
	var first, second struct {
		Time, Endpoint, Peer, Topic, Message string
		Truncated                            bool
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Topic != "app.WARN" || first.Message != "disk\nalmost full" || first.Peer != "127.0.0.1" || first.Endpoint != bound.Endpoint || first.Truncated {
		t.Errorf("first line %+v", first)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if len(second.Message) != 1000 || !second.Truncated {
		t.Errorf("oversize message: %d bytes, truncated %v", len(second.Message), second.Truncated)
	}
}

func rebind(t *testing.T, ep string) *zmqtest.Publisher {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := zmqtest.BindAt(ep)
		if err == nil {
			t.Cleanup(func() { p.Close() })
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestPrometheusScrapes runs a real Prometheus server with the shipped
// scrape configuration and alerting rules (pointed at this test's port,
// with the rules' waiting times cut to nothing) and asks its API for the
// received-messages series and the alerts: a publisher that is not there
// fires AggregatorPublisherDown, and nothing else fires.
func TestPrometheusScrapes(t *testing.T) {
	skipShort(t)
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is missing: run scripts/install-deps --test (Debian package prometheus)")
	}
	bound, _ := publishers(t)
	absent := "tcp://" + freeAddr(t)
	p := startAggNotReady(t, map[string]string{"AGG_CONNECT": bound.Endpoint + "," + absent})
	subscribed(t, bound)
	startLoad(t, bound, "prom", 10, 0, 0).wait(t)

	dir := t.TempDir()
	for name, edit := range map[string]func(string) string{
		"prometheus.yml": func(s string) string {
			s = strings.ReplaceAll(s, "127.0.0.1:9780", p.http)
			s = strings.ReplaceAll(s, "/usr/share/aggregator/alerts.yml", filepath.Join(dir, "alerts.yml"))
			return strings.ReplaceAll(s, "scrape_interval: 15s", "scrape_interval: 1s\n  evaluation_interval: 1s")
		},
		"alerts.yml": func(s string) string {
			return regexp.MustCompile(`for: \d+m`).ReplaceAllString(s, "for: 0s")
		},
	} {
		shipped, err := os.ReadFile("../../configs/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(edit(string(shipped))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	confPath := filepath.Join(dir, "prometheus.yml")
	web := freeAddr(t)
	cmd := exec.Command(prom, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", logs.String())
		}
	}()
	api := func(path string, into any) bool {
		resp, err := http.Get("http://" + web + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(into) == nil
	}
	eventually.Within(t, 30*time.Second, "Prometheus has aggregator_messages_received_total = 10", func() bool {
		var body struct {
			Data struct {
				Result []struct {
					Metric map[string]string
					Value  []any
				}
			}
		}
		if !api("/api/v1/query?query=aggregator_messages_received_total", &body) {
			return false
		}
		for _, r := range body.Data.Result {
			if r.Metric["job"] == "aggregator" && r.Metric["endpoint"] == bound.Endpoint && len(r.Value) == 2 && r.Value[1] == "10" {
				return true
			}
		}
		return false
	})

	type alert struct {
		Labels map[string]string
		State  string
	}
	var firing []alert
	eventually.Within(t, 30*time.Second, "AggregatorPublisherDown fires for "+absent, func() bool {
		var body struct{ Data struct{ Alerts []alert } }
		if !api("/api/v1/alerts", &body) {
			return false
		}
		firing = firing[:0]
		down := false
		for _, a := range body.Data.Alerts {
			if a.State == "firing" {
				firing = append(firing, a)
				down = down || a.Labels["alertname"] == "AggregatorPublisherDown" && a.Labels["endpoint"] == absent
			}
		}
		return down
	})
	for _, a := range firing {
		if a.Labels["alertname"] != "AggregatorPublisherDown" || a.Labels["endpoint"] != absent {
			t.Errorf("firing too: %v", a.Labels)
		}
	}
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health string
				}
			}
		}
	}
	if !api("/api/v1/rules", &rules) || len(rules.Data.Groups) != 1 {
		t.Fatalf("rules: %+v", rules)
	}
	for _, r := range rules.Data.Groups[0].Rules {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q", r.Name, r.Health)
		}
	}
}

// TestCurveBind: with a secret key, the bind endpoint takes encrypted
// publishers that know the daemon's public key, and refuses plain ones.
func TestCurveBind(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(aggBin, "-curve-keygen", filepath.Join(dir, "aggregator")).Output()
	if err != nil {
		t.Fatalf("-curve-keygen: %v", err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != 2 {
		t.Fatalf("-curve-keygen printed %q", out)
	}
	daemonPublic, err := curve.LoadPublic(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := curve.Keygen(filepath.Join(dir, "publisher"))
	if err != nil {
		t.Fatal(err)
	}
	pubID, err := curve.LoadSecret(secret)
	if err != nil {
		t.Fatal(err)
	}

	_, bindEP := publishers(t)
	p := startAgg(t, map[string]string{"AGG_BIND": bindEP, "AGG_CURVE_SECRET_KEY_FILE": paths[0]})
	plain := connectTo(t, bindEP)
	enc, err := zmqtest.ConnectCurve(bindEP, &pubID, daemonPublic)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	subscribed(t, enc)
	if err := plain.WaitSubscribed(1, 300*time.Millisecond); err == nil {
		t.Fatal("a plain-text publisher completed the handshake")
	}
	plain.Send([]byte("plain text"))
	enc.Send([]byte("encrypted"))
	p.waitMetric("aggregator_lines_written_total", 1)
	p.waitMetric(`aggregator_connection_events_total{endpoint="`+bindEP+`",event="handshake_failed"}`, 1)
	p.stop()
	seen, _ := readMessages(t, p.log)
	if seen["encrypted"] != 1 || len(seen) != 1 {
		t.Fatalf("lines: %v", seen)
	}
}

// TestCurveAllowList: with AGG_CURVE_ALLOWED_KEYS_FILE, a publisher whose
// key is not listed is refused even though it knows the daemon's key.
func TestCurveAllowList(t *testing.T) {
	dir := t.TempDir()
	daemonSecret, daemonPublicPath, err := curve.Keygen(filepath.Join(dir, "aggregator"))
	if err != nil {
		t.Fatal(err)
	}
	daemonPublic, _ := curve.LoadPublic(daemonPublicPath)
	goodSecret, goodPublic, _ := curve.Keygen(filepath.Join(dir, "good"))
	badSecret, _, _ := curve.Keygen(filepath.Join(dir, "bad"))
	good, _ := curve.LoadSecret(goodSecret)
	bad, _ := curve.LoadSecret(badSecret)

	_, bindEP := publishers(t)
	p := startAgg(t, map[string]string{
		"AGG_BIND":                    bindEP,
		"AGG_CURVE_SECRET_KEY_FILE":   daemonSecret,
		"AGG_CURVE_ALLOWED_KEYS_FILE": goodPublic,
	})
	refused, err := zmqtest.ConnectCurve(bindEP, &bad, daemonPublic)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	allowed, err := zmqtest.ConnectCurve(bindEP, &good, daemonPublic)
	if err != nil {
		t.Fatal(err)
	}
	defer allowed.Close()
	subscribed(t, allowed)
	if err := refused.WaitSubscribed(1, 300*time.Millisecond); err == nil {
		t.Fatal("a publisher whose key is not listed completed the handshake")
	}
	refused.Send([]byte("refused"))
	allowed.Send([]byte("allowed"))
	p.waitMetric("aggregator_lines_written_total", 1)
	p.waitMetric(`aggregator_connection_events_total{endpoint="`+bindEP+`",event="handshake_failed"}`, 1)
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	seen, _ := readMessages(t, p.log)
	if seen["allowed"] != 1 || len(seen) != 1 {
		t.Fatalf("lines: %v", seen)
	}
	if !strings.Contains(p.stderr.String(), "CurveZMQ peer refused") {
		t.Error("the refusal was not logged")
	}
}

// TestFullDisk: writes that fail are counted as dropped, /-/ready says why,
// and the daemon keeps running.
func TestFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	logFile := filepath.Join(t.TempDir(), "subscriber.log")
	if err := os.Symlink("/dev/full", logFile); err != nil {
		t.Fatal(err)
	}
	bound, _ := publishers(t)
	p := startAgg(t, map[string]string{"AGG_CONNECT": bound.Endpoint, "AGG_LOG_FILE": logFile})
	subscribed(t, bound)
	startLoad(t, bound, "full", 500, 0, 0).wait(t)
	p.waitMetric(`aggregator_messages_dropped_total{reason="write_error"}`, 500)
	resp, err := http.Get("http://" + p.http + "/-/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "no space left on device") {
		t.Errorf("/-/ready: %d %q", resp.StatusCode, body)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if received, written, dropped := p.totals(); received != 500 || written != 0 || dropped != 500 {
		t.Errorf("totals: received %d, written %d, dropped %d", received, written, dropped)
	}
}
