// Package systemd holds the service units; this test checks them with the
// tools systemd itself ships.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// installed rewrites the unit's /usr/bin paths to freshly built binaries,
// as the package or `make install` would place them, so that verify can check
// that ExecStart= names an executable.
func installed(t *testing.T, unit string) string {
	t.Helper()
	bin := t.TempDir()
	for _, name := range []string{"aggregator", "downcase"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), "../cmd/"+name).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), unit)
	rewritten := strings.ReplaceAll(string(text), "=/usr/bin/", "="+bin+"/")
	if err := os.WriteFile(out, []byte(rewritten), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func analyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: run scripts/install-deps --test (Debian package systemd)")
	}
	return path
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestUnits(t *testing.T) {
	sa := analyze(t)
	for _, unit := range []string{"aggregator.service", "downcase.service"} {
		t.Run(unit, func(t *testing.T) {
			path := installed(t, unit)
			cmd := exec.Command(sa, "verify", path)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.Output()
			if err != nil || stderr.Len() > 0 || len(stdout) > 0 {
				t.Fatalf("systemd-analyze verify: %v\nstdout: %s\nstderr: %s", err, stdout, stderr.String())
			}
			out, err := exec.Command(sa, "security", "--offline=true", path).CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze security: %v\n%s", err, out)
			}
			m := exposure.FindStringSubmatch(string(out))
			if m == nil {
				t.Fatalf("no exposure level in:\n%s", out)
			}
			score, _ := strconv.ParseFloat(m[1], 64)
			t.Logf("%s exposure %.1f", unit, score)
			if score > 1.5 {
				t.Fatalf("exposure %.1f, want 1.5 or lower:\n%s", score, out)
			}
		})
	}
}

// TestUnitsKeepTheirPromises checks the settings the README and the
// daemon rely on.
func TestUnitsKeepTheirPromises(t *testing.T) {
	text, err := os.ReadFile("aggregator.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify",
		"EnvironmentFile=-/etc/aggregator/aggregator.env",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"Restart=on-failure",
		"RestartPreventExitStatus=78",
		"LogsDirectory=aggregator",
		"Environment=AGG_LOG_FILE=/var/log/aggregator/subscriber.log",
		"ProtectSystem=strict",
	} {
		if !strings.Contains(string(text), want+"\n") {
			t.Errorf("aggregator.service lacks %q", want)
		}
	}
	// RestartPreventExitStatus= sees the main process only: a configuration
	// check in ExecStartPre= would be retried until the start limit.
	for _, unit := range []string{"aggregator.service", "downcase.service"} {
		if text, _ := os.ReadFile(unit); strings.Contains("\n"+string(text), "\nExecStartPre=") {
			t.Errorf("%s checks its configuration in ExecStartPre=", unit)
		}
	}
}

// TestMakeInstall installs into a DESTDIR with another PREFIX and checks
// that the units point at the installed binaries.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is missing: run scripts/install-deps")
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/opt/agg")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{
		"/opt/agg/bin/aggregator", "/opt/agg/bin/downcase",
		"/etc/systemd/system/aggregator.service", "/etc/systemd/system/downcase.service",
		"/usr/lib/sysusers.d/aggregator.conf",
		"/etc/aggregator/aggregator.env", "/etc/aggregator/downcase.env",
		"/opt/agg/share/doc/aggregator/README.md",
		"/opt/agg/share/aggregator/alerts.yml",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %s", f)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "/etc/systemd/system/aggregator.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/agg/bin/aggregator\n") {
		t.Errorf("unit does not run the installed binary:\n%s", unit)
	}
	cmd = exec.Command("make", "-C", "..", "uninstall", "DESTDIR="+dest, "PREFIX=/opt/agg")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dest, "/opt/agg/bin/aggregator")); err == nil {
		t.Error("uninstall left the binary")
	}
}
