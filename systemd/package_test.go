package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The package the tests install, built once per test binary by the same
// script as `make deb`, lintian included.
var pkg struct {
	once sync.Once
	dir  string
	deb  string
	err  error
	log  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pkg.dir != "" {
		os.RemoveAll(pkg.dir)
	}
	os.Exit(code)
}

// debVersion is the version the tests build; upgrades go to debVersion+"+1".
const debVersion = "1.0~test"

// buildDeb builds the package (scripts/build-deb, which fails on any
// lintian error) and returns its path.
func buildDeb(t *testing.T) string {
	t.Helper()
	pkg.once.Do(func() {
		if pkg.dir, pkg.err = os.MkdirTemp("", "aggregator-deb-"); pkg.err != nil {
			return
		}
		cmd := exec.Command("../scripts/build-deb", debVersion)
		cmd.Env = append(os.Environ(), "DEB_OUT_DIR="+pkg.dir)
		var out []byte
		out, pkg.err = cmd.Output()
		if ee, ok := pkg.err.(*exec.ExitError); ok {
			pkg.log = ee.Stderr
		}
		pkg.deb = strings.TrimSpace(string(out))
	})
	if pkg.err != nil {
		t.Fatalf("scripts/build-deb: %v\n%s", pkg.err, pkg.log)
	}
	return pkg.deb
}

// newerBuild repacks deb as the next version with a changed
// /etc/aggregator/aggregator.env, what a later release that touches the
// shipped configuration looks like to dpkg.
func newerBuild(t *testing.T, deb string) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("dpkg-deb", "-R", deb, tree)
	control := filepath.Join(tree, "DEBIAN", "control")
	text, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	text = []byte(strings.Replace(string(text), "Version: "+debVersion+"\n", "Version: "+debVersion+"+1\n", 1))
	if err := os.WriteFile(control, text, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(tree, "etc", "aggregator", "aggregator.env")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("# A line the newer build adds.\n")
	f.Close()
	// md5sums lists the files; dpkg checks conffiles against it.
	run("sh", "-c", `cd "$1" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums`, "sh", tree)
	newer := filepath.Join(filepath.Dir(tree), "aggregator_"+debVersion+"+1.deb")
	run("dpkg-deb", "--root-owner-group", "-b", tree, newer)
	return newer
}

// install copies a package into the machine and installs it with dpkg, as
// an automated `apt-get -o Dpkg::Options::=--force-confold install` would:
// keeping a locally edited configuration file when the package's own
// changed.
func (m *machine) install(deb string) string {
	m.t.Helper()
	data, err := os.ReadFile(deb)
	if err != nil {
		m.t.Fatal(err)
	}
	inside := "/root/" + filepath.Base(deb)
	writeFile(m.t, m.path(inside), string(data))
	return m.must("dpkg", "--force-confdef", "--force-confold", "-i", inside)
}

// path is a path inside the machine as the host sees it.
func (m *machine) path(p string) string {
	return filepath.Join("/proc", strconv.Itoa(m.pid1), "root", p)
}
