package zmqbuild

import (
	"regexp"
	"strings"
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
