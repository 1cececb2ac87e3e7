package zmqbuild

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// The binaries link Debian's shared libzmq5, so that its security updates
// reach them: a static or vendored libzmq would keep the old code.
func TestSharedLibzmq(t *testing.T) {
	d := Describe()
	if !regexp.MustCompile(`^libzmq 4\.\d+\.\d+ from /`).MatchString(d) {
		t.Errorf("Describe() = %q", d)
	}
	if f := File(); !strings.Contains(f, "/libzmq.so.5") {
		t.Errorf("File() = %q, want Debian's shared libzmq.so.5", f)
	}
}

// The process knows the libzmq file it mapped, and tells when a package
// upgrade has put another in its place.
func TestReplaced(t *testing.T) {
	ino, ok := mappedInode(File())
	if !ok {
		t.Fatalf("%s is not in /proc/self/maps", File())
	}
	if replacedSince(File(), ino) {
		t.Errorf("%s reported replaced while it is the mapped one", File())
	}

	// What dpkg does to a file it upgrades: a new one renamed over it.
	path := filepath.Join(t.TempDir(), "libzmq.so.5.2.4")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	old := st.Sys().(*syscall.Stat_t).Ino
	if replacedSince(path, old) {
		t.Fatal("replaced before the upgrade")
	}
	if err := os.WriteFile(path+".dpkg-new", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".dpkg-new", path); err != nil {
		t.Fatal(err)
	}
	if !replacedSince(path, old) {
		t.Error("not replaced after the upgrade")
	}
}
