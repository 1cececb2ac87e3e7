package systemd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"aggregator/internal/eventually"
)

// machine is a Debian 12 system booted with systemd as PID 1 in fresh PID,
// mount, UTS, IPC and network namespaces, on an overlay of the cached root
// (scripts/test-rootfs). Its network namespace has only loopback, so the
// default ports cannot clash with anything on the host.
type machine struct {
	t    *testing.T
	pid1 int // host PID of the machine's systemd
}

// boot boots a new machine, returning once systemd says the system is up.
// Nothing of the project is installed: tests install the package.
func boot(t *testing.T) *machine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("booting systemd needs root (namespaces, mounts)")
	}
	for _, tool := range []string{"unshare", "nsenter", "ip", "debootstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run scripts/install-deps --test", tool)
		}
	}
	out, err := exec.Command("../scripts/test-rootfs").Output()
	if err != nil {
		t.Fatalf("scripts/test-rootfs: %v", err)
	}
	lower := strings.TrimSpace(string(out))

	dir := t.TempDir()
	upper, work, root := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "root")
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The one setting this sandbox cannot give: a user namespace inside
	// these namespaces fails every service with 217/USER, /bin/true
	// included. Everything else runs as shipped.
	for _, unit := range []string{"aggregator", "downcase"} {
		writeFile(t, filepath.Join(upper, "etc/systemd/system", unit+".service.d", "sandbox.conf"),
			"# The test's sandbox cannot create user namespaces (217/USER).\n[Service]\nPrivateUsers=no\n")
	}

	console, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc", "--net",
		"testdata/boot.sh", lower, upper, work, root)
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &machine{t: t}
	t.Cleanup(func() {
		// SIGKILL to PID 1 ends every process of the namespace, and with
		// the last of them its mounts.
		if m.pid1 != 0 {
			if t.Failed() {
				journal, _ := m.run("journalctl", "--no-pager", "-n", "200")
				t.Logf("journal:\n%s", journal)
			}
			syscall.Kill(m.pid1, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
		console.Close()
		if t.Failed() {
			text, _ := os.ReadFile(console.Name())
			t.Logf("console:\n%s", text)
		}
	})
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	eventually.Within(t, 10*time.Second, "unshare forks PID 1", func() bool {
		b, _ := os.ReadFile(children)
		m.pid1, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return m.pid1 != 0
	})
	eventually.Within(t, 60*time.Second, "systemd boots", func() bool {
		state, _ := m.run("systemctl", "is-system-running")
		return state == "running" || state == "degraded"
	})
	return m
}

// run runs a command inside the machine and returns its trimmed output.
func (m *machine) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(m.pid1), "-m", "-p", "-u", "-i", "-n", "-r", "-w"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	return string(bytes.TrimSpace(out)), err
}

// must runs a command that has to succeed.
func (m *machine) must(args ...string) string {
	m.t.Helper()
	out, err := m.run(args...)
	if err != nil {
		m.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// show reads one property of a unit.
func (m *machine) show(unit, property string) string {
	m.t.Helper()
	return m.must("systemctl", "show", "--value", "-p", property, unit)
}

// get fetches a URL inside the machine: status code and body.
func (m *machine) get(url string) (int, string) {
	m.t.Helper()
	out, err := m.run("curl", "-sS", "-w", "\n%{http_code}", url)
	if err != nil {
		return 0, out
	}
	i := strings.LastIndexByte(out, '\n')
	code, _ := strconv.Atoi(out[i+1:])
	return code, out[:max(i, 0)]
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	aggReady = "http://127.0.0.1:9780/-/ready"
	logFile  = "/var/log/aggregator/subscriber.log"
)

// TestUnderSystemd does what docs/operations.md tells users to do on a server, on
// a machine where systemd is PID 1: install the package, use the daemon,
// upgrade it with a locally edited configuration, and purge it.
func TestUnderSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd")
	}
	deb := buildDeb(t)
	m := boot(t)

	// Install: the package creates the user, enables and starts the
	// service. Type=notify, so dpkg returns once the daemon said READY=1,
	// and by then it answers ready on the first try.
	m.install(deb)
	if state := m.show("aggregator", "ActiveState"); state != "active" {
		t.Fatalf("aggregator is %s after dpkg -i", state)
	}
	if code, body := m.get(aggReady); code != 200 {
		t.Fatalf("/-/ready right after dpkg -i: %d %s", code, body)
	}
	if state := m.must("systemctl", "is-enabled", "aggregator"); state != "enabled" {
		t.Errorf("is-enabled: %s", state)
	}
	// Debian 12's systemd names /lib first, which is /usr/lib merged.
	if path := m.show("aggregator", "FragmentPath"); strings.TrimPrefix(path, "/usr") != "/lib/systemd/system/aggregator.service" {
		t.Errorf("the unit is %s", path)
	}
	if user := m.must("getent", "passwd", "aggregator"); !strings.HasSuffix(user, ":/nonexistent:/usr/sbin/nologin") {
		t.Errorf("the package's user: %s", user)
	}
	for _, f := range []string{"/usr/share/aggregator/alerts.yml", "/usr/share/doc/aggregator/examples/aggregator.logrotate", "/usr/share/doc/aggregator/README.md"} {
		m.must("test", "-f", f)
	}
	// The demo publisher is installed, not started: it listens on ports
	// an administrator has not asked for.
	if state := m.show("downcase", "ActiveState"); state != "inactive" {
		t.Errorf("downcase is %s after dpkg -i, want inactive", state)
	}
	m.must("systemctl", "start", "downcase")
	if code, body := m.get("http://127.0.0.1:5000/-/ready"); code != 200 {
		t.Fatalf("downcase /-/ready right after start: %d %s", code, body)
	}

	// The demo: a request to downcase becomes a line in the log.
	eventually.Within(t, 10*time.Second, "aggregator connects to downcase", func() bool {
		_, metrics := m.get("http://127.0.0.1:9780/metrics")
		return strings.Contains(metrics, `aggregator_connection_events_total{endpoint="tcp://127.0.0.1:4444",event="connected"}`)
	})
	demo := func(param string) string {
		t.Helper()
		code, body := m.get("http://127.0.0.1:5000/downcase/?param=" + param)
		want := "lower case of " + param + " is " + strings.ToLower(param)
		if code != 200 || body != want {
			t.Fatalf("downcase answered %d %q, want 200 %q", code, body, want)
		}
		return want
	}
	first := demo("HeLLo")
	eventually.Within(t, 5*time.Second, "the line reaches "+logFile, func() bool {
		text, _ := m.run("cat", logFile)
		return strings.HasSuffix(text, " "+first)
	})
	if owner := m.must("stat", "-c", "%U:%G %a", logFile); owner != "aggregator:aggregator 640" {
		t.Errorf("%s is %s, want aggregator:aggregator 640", logFile, owner)
	}

	// logrotate's way: move the file away, reload, and the next line goes
	// to a new live file.
	m.must("mv", logFile, logFile+".1")
	m.must("systemctl", "reload", "aggregator")
	second := demo("WoRLD")
	eventually.Within(t, 5*time.Second, "the next line reaches a new "+logFile, func() bool {
		text, _ := m.run("cat", logFile)
		return strings.HasSuffix(text, " "+second)
	})
	if old := m.must("cat", logFile+".1"); strings.Contains(old, second) || !strings.Contains(old, first) {
		t.Errorf("the moved file holds %q", old)
	}

	// Stop: a clean exit with the totals in the journal.
	m.must("systemctl", "stop", "aggregator")
	if r := m.show("aggregator", "Result"); r != "success" {
		t.Errorf("Result=%s after stop, want success", r)
	}
	journal := m.must("journalctl", "-u", "aggregator", "--no-pager", "-o", "cat")
	if !strings.Contains(journal, "msg=totals received=2 written=2 dropped=0") {
		t.Errorf("no totals in the journal:\n%s", journal)
	}

	// A bad value: the start fails, the journal names the variable, and
	// systemd does not retry (the daemon's own check exits 78).
	m.must("sh", "-c", "echo AGG_MAX_SIZE_MB=-5 >> /etc/aggregator/aggregator.env")
	if out, err := m.run("systemctl", "start", "aggregator"); err == nil {
		t.Fatalf("systemctl start succeeded with a bad configuration: %s", out)
	}
	time.Sleep(3 * time.Second) // longer than RestartSec=2s
	if s, n := m.show("aggregator", "ActiveState"), m.show("aggregator", "NRestarts"); s != "failed" || n != "0" {
		t.Errorf("after a bad configuration: ActiveState=%s NRestarts=%s, want failed and 0", s, n)
	}
	if status := m.show("aggregator", "ExecMainStatus"); status != "78" {
		t.Errorf("exit status %s, want 78", status)
	}
	if journal := m.must("journalctl", "-u", "aggregator", "--no-pager", "-o", "cat"); !strings.Contains(journal, "AGG_MAX_SIZE_MB: -5: must be at least 1") {
		t.Errorf("the journal does not name AGG_MAX_SIZE_MB:\n%s", journal)
	}
	m.must("sed", "-i", "/AGG_MAX_SIZE_MB=-5/d", "/etc/aggregator/aggregator.env")
	m.must("systemctl", "reset-failed", "aggregator")

	// The watchdog: a frozen daemon is killed and restarted. The shipped
	// WatchdogSec=30s is shortened for this step only, in a runtime
	// drop-in, so that the test does not wait half a minute.
	writeFile(t, "/proc/"+strconv.Itoa(m.pid1)+"/root/run/systemd/system/aggregator.service.d/watchdog.conf",
		"[Service]\nWatchdogSec=2s\n")
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", "aggregator")
	frozen := m.show("aggregator", "MainPID")
	m.must("kill", "-STOP", frozen)
	eventually.Within(t, 15*time.Second, "the watchdog restarts the frozen daemon", func() bool {
		return m.show("aggregator", "NRestarts") == "1" && m.show("aggregator", "ActiveState") == "active"
	})
	if pid := m.show("aggregator", "MainPID"); pid == frozen {
		t.Errorf("MainPID is still %s", pid)
	}
	if journal := m.must("journalctl", "-u", "aggregator", "--no-pager"); !strings.Contains(journal, "Failed with result 'watchdog'") {
		t.Errorf("the journal does not show the watchdog:\n%s", journal)
	}
	if code, body := m.get(aggReady); code != 200 {
		t.Errorf("/-/ready after the watchdog restart: %d %s", code, body)
	}
	m.must("rm", "/run/systemd/system/aggregator.service.d/watchdog.conf")
	m.must("systemctl", "daemon-reload")

	// Upgrade: a newer build whose aggregator.env changed, over a local
	// edit of it. The edit is kept (the new file beside it as
	// .dpkg-dist), and the daemon is restarted and runs with it.
	const edited = "/var/log/aggregator/edited.log"
	m.must("sh", "-c", "echo AGG_LOG_FILE="+edited+" >> /etc/aggregator/aggregator.env")
	before, downcaseBefore := m.show("aggregator", "MainPID"), m.show("downcase", "MainPID")
	m.install(newerBuild(t, deb))
	if v := m.must("dpkg-query", "-W", "-f", "${Version}", "aggregator"); v != debVersion+"+1" {
		t.Fatalf("installed version %s after the upgrade", v)
	}
	if conf := m.must("cat", "/etc/aggregator/aggregator.env"); !strings.Contains(conf, "AGG_LOG_FILE="+edited) {
		t.Errorf("the upgrade lost the local edit:\n%s", conf)
	}
	if dist := m.must("cat", "/etc/aggregator/aggregator.env.dpkg-dist"); !strings.Contains(dist, "# A line the newer build adds.") {
		t.Errorf("the newer aggregator.env is not beside it:\n%s", dist)
	}
	if after := m.show("aggregator", "MainPID"); after == before || after == "0" {
		t.Errorf("MainPID %s before the upgrade, %s after: not restarted", before, after)
	}
	if m.show("downcase", "ActiveState") != "active" || m.show("downcase", "MainPID") == downcaseBefore {
		t.Errorf("downcase, started by hand, was not restarted on the new binary by the upgrade")
	}
	// Both were restarted, in either order: wait for the connection, not
	// for a count of connections.
	eventually.Within(t, 10*time.Second, "aggregator reconnects to downcase", func() bool {
		_, metrics := m.get("http://127.0.0.1:9780/metrics")
		return strings.Contains(metrics, `aggregator_endpoint_connections{endpoint="tcp://127.0.0.1:4444"} 1`)
	})
	third := demo("UpGrAdEd")
	eventually.Within(t, 5*time.Second, "the line reaches "+edited, func() bool {
		text, _ := m.run("cat", edited)
		return strings.HasSuffix(text, " "+third)
	})

	// Purge: both services stopped, the units, configuration, logs and
	// state gone; the user stays, as Debian keeps system users.
	m.must("dpkg", "--purge", "aggregator")
	for _, unit := range []string{"aggregator", "downcase"} {
		if state := m.show(unit, "ActiveState"); state != "inactive" {
			t.Errorf("%s is %s after the purge", unit, state)
		}
		if load := m.show(unit, "LoadState"); load != "not-found" {
			t.Errorf("%s.service is %s after the purge, want not-found", unit, load)
		}
	}
	for _, gone := range []string{"/usr/bin/aggregator", "/usr/lib/systemd/system/aggregator.service", "/etc/aggregator", "/var/log/aggregator",
		"/etc/systemd/system/multi-user.target.wants/aggregator.service"} {
		if out, err := m.run("ls", "-d", gone); err == nil {
			t.Errorf("%s is still there after the purge: %s", gone, out)
		}
	}
}
