package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"aggregator/internal/eventually"
	"aggregator/internal/sink"
)

// The producers people log with over ZeroMQ, from Debian's packages
// (python3-zmq, python3-logbook; scripts/install-deps --test installs
// them). Debian's own interpreter, not whichever python3 is first on PATH.
const debianPython = "/usr/bin/python3"

func python(t *testing.T, script string, args ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		t.Fatalf("%s is missing: run scripts/install-deps --test", debianPython)
	}
	cmd := exec.Command(debianPython, append([]string{"-c", script}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second): // a script that runs until stopped
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("python stderr:\n%s", stderr.String())
		}
	})
	return cmd, stdin
}

// jsonLines reads the daemon's JSON lines.
func jsonLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	var out []map[string]any
	err := sink.ReadLines(path, func(file string, line []byte) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s: %q: %v", file, line, err)
		}
		out = append(out, m)
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// pubHandlerScript logs through pyzmq's PUBHandler bound at argv[1], under
// the root topic "shop": a "probe" line on stdin logs a probe (PUB/SUB
// drops what is sent before the subscription arrives), "go" logs 100
// records and exits.
const pubHandlerScript = `
import logging, sys, time
from zmq.log.handlers import PUBHandler
handler = PUBHandler(sys.argv[1])
handler.root_topic = "shop"
log = logging.getLogger("shop")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
for line in sys.stdin:
    if line.strip() == "probe":
        log.info("probe")
    elif line.strip() == "go":
        for i in range(100):
            (log.warning if i % 2 else log.info)("order %d placed", i)
        time.sleep(0.5)
        break
`

// TestPythonPUBHandler: Python's logging through pyzmq's PUBHandler. Its
// topic (shop.INFO) arrives as the topic, its record without the "\n"
// its formatter ends with.
func TestPythonPUBHandler(t *testing.T) {
	ep := freeAddr(t)
	_, stdin := python(t, pubHandlerScript, "tcp://"+ep)
	d := startAgg(t, map[string]string{"AGG_CONNECT": "tcp://" + ep, "AGG_FORMAT": "json"})
	deadline := time.Now().Add(10 * time.Second)
	for d.metric("aggregator_lines_written_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no probe arrived")
		}
		fmt.Fprintln(stdin, "probe")
		time.Sleep(50 * time.Millisecond)
	}
	probes := d.metric("aggregator_lines_written_total")
	fmt.Fprintln(stdin, "go")
	d.waitMetric("aggregator_lines_written_total", probes+100)
	d.stop()

	var records []map[string]any
	for _, l := range jsonLines(t, d.log) {
		if l["message"] != "probe" {
			records = append(records, l)
		}
	}
	if len(records) != 100 {
		t.Fatalf("%d records, want 100", len(records))
	}
	for i, r := range records {
		// PUBHandler's INFO format is the bare message; WARNING adds the
		// level and the source line. Both end in "\n", which the daemon drops.
		topic, want := "shop.INFO", fmt.Sprintf("order %d placed", i)
		if i%2 == 1 {
			topic = "shop.WARNING"
		}
		msg := r["message"].(string)
		if r["topic"] != topic {
			t.Errorf("record %d: topic %q, want %s", i, r["topic"], topic)
		}
		if i%2 == 0 && msg != want || i%2 == 1 && (!strings.HasPrefix(msg, "WARNING ") || !strings.HasSuffix(msg, " - "+want)) {
			t.Errorf("record %d: message %q", i, msg)
		}
	}
}

// logbookScript sends n records through logbook's ZeroMQHandler with
// multi=True: a PUSH socket connecting to argv[1].
const logbookScript = `
import sys
import logbook
from logbook.queues import ZeroMQHandler
handler = ZeroMQHandler(sys.argv[1], multi=True)
with handler.applicationbound():
    log = logbook.Logger("shop")
    for i in range(int(sys.argv[2])):
        log.info("order {} placed", i)
handler.close(linger=5000)
`

// TestLogbookPUSH: logbook's PUSH handler into a PULL endpoint. PUSH waits
// for its receiver, so nothing is lost to a slow joiner: all 1,000 records
// arrive, in order.
func TestLogbookPUSH(t *testing.T) {
	ep := freeAddr(t)
	d := startAgg(t, map[string]string{"AGG_PULL_BIND": "tcp://" + ep, "AGG_FORMAT": "json"})
	cmd, stdin := python(t, logbookScript, "tcp://"+ep, "1000")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logbook: %v", err)
	}
	d.waitMetric("aggregator_lines_written_total", 1000)
	d.stop()
	lines := jsonLines(t, d.log)
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	for i, l := range lines {
		var rec struct {
			Message string `json:"message"`
			Channel string `json:"channel"`
		}
		if err := json.NewDecoder(bufio.NewReader(strings.NewReader(l["message"].(string)))).Decode(&rec); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if want := fmt.Sprintf("order %d placed", i); rec.Message != want || rec.Channel != "shop" {
			t.Fatalf("line %d: %+v, want %q from shop", i, rec, want)
		}
	}
}

// curveClientScript publishes through a CurveZMQ PUB socket with pyzmq's
// certificates: argv[1] endpoint, argv[2] its secret certificate, argv[3]
// the server's public one, argv[4] its name. Like a client that was
// refused, it connects anew every second (libzmq does not retry a
// handshake the server refused), sending "<name> <n>" every 20 ms.
const curveClientScript = `
import sys, time, zmq, zmq.auth
pub, sec = zmq.auth.load_certificate(sys.argv[2])
srv, _ = zmq.auth.load_certificate(sys.argv[3])
ctx = zmq.Context()
n = 0
while True:
    s = ctx.socket(zmq.PUB)
    s.linger = 0
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, srv
    s.connect(sys.argv[1])
    end = time.time() + 1
    while time.time() < end:
        s.send_string("%s %d" % (sys.argv[4], n))
        n += 1
        time.sleep(0.02)
    s.close()
`

// TestCurveWithPyzmqCertificates: certificates made by pyzmq's
// create_certificates; the daemon's allow-list is their directory. A
// listed client gets in, an unlisted one gets nothing until its
// certificate is added, then it gets in without a restart. pyzmq reads
// the certificates -curve-keygen writes.
func TestCurveWithPyzmqCertificates(t *testing.T) {
	certs, allowed := t.TempDir(), t.TempDir()
	if out, err := exec.Command(debianPython, "-c", `
import sys, zmq.auth
for name in ("server", "listed", "unlisted"):
    zmq.auth.create_certificates(sys.argv[1], name)
`, certs).CombinedOutput(); err != nil {
		t.Fatalf("create_certificates: %v\n%s", err, out)
	}
	copyFile := func(from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(certs+"/listed.key", allowed+"/listed.key")
	ep := "tcp://" + freeAddr(t)
	d := startAgg(t, map[string]string{
		"AGG_BIND":                    ep,
		"AGG_CURVE_SECRET_KEY_FILE":   certs + "/server.key_secret",
		"AGG_CURVE_ALLOWED_KEYS_FILE": allowed,
	})
	python(t, curveClientScript, ep, certs+"/listed.key_secret", certs+"/server.key", "listed")
	python(t, curveClientScript, ep, certs+"/unlisted.key_secret", certs+"/server.key", "unlisted")
	received := func(name string) int {
		n := 0
		sink.ReadLines(d.log, func(_ string, line []byte) {
			if strings.Contains(string(line), " "+name+" ") {
				n++
			}
		})
		return n
	}
	eventually.Within(t, 10*time.Second, "the listed client gets in", func() bool { return received("listed") > 0 })
	time.Sleep(2 * time.Second)
	if n := received("unlisted"); n != 0 {
		t.Fatalf("the unlisted client got %d messages in", n)
	}
	if refused := d.metric(`aggregator_connection_events_total{endpoint="` + ep + `",event="handshake_failed"}`); refused == 0 {
		t.Error("no refused handshake counted")
	}
	copyFile(certs+"/unlisted.key", allowed+"/unlisted.key")
	eventually.Within(t, 10*time.Second, "the client gets in once listed, without a restart", func() bool { return received("unlisted") > 0 })
	if strings.Count(d.stderr.String(), "key not allowed") > 1 {
		t.Errorf("refusals logged more than once a minute:\n%s", d.stderr)
	}

	// The other way: pyzmq reads what -curve-keygen writes.
	out, err := exec.Command(aggBin, "-curve-keygen", certs+"/agg").CombinedOutput()
	if err != nil {
		t.Fatalf("-curve-keygen: %v\n%s", err, out)
	}
	out, err = exec.Command(debianPython, "-c", `
import sys, zmq, zmq.auth
pub, sec = zmq.auth.load_certificate(sys.argv[1] + "_secret")
pub2, none = zmq.auth.load_certificate(sys.argv[1])
assert pub == pub2 and none is None and zmq.curve_public(sec) == pub, (pub, pub2)
print("ok")
`, certs+"/agg").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("pyzmq cannot read -curve-keygen's certificates: %v\n%s", err, out)
	}
	if info, err := os.Stat(certs + "/agg_secret"); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("secret certificate: %v, %v", info.Mode(), err)
	}
}
