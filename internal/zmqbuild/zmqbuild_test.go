package zmqbuild

import (
	"regexp"
	"testing"
)

func TestDescribe(t *testing.T) {
	d := Describe()
	if !regexp.MustCompile(`^libzmq 4\.\d+\.\d+ with pipe chunks of \d+ messages$`).MatchString(d) {
		t.Errorf("Describe() = %q", d)
	}
	if n := PipeChunk(); n <= 0 || n&(n-1) != 0 {
		t.Errorf("PipeChunk() = %d, want a power of two", n)
	}
}
