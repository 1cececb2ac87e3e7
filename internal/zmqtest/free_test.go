package zmqtest

import "testing"

// TestFreeAddrNeverTwice: the ports FreeAddr gives one process differ, so
// that the servers of one test never get the same one.
func TestFreeAddrNeverTwice(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s given twice", addr)
		}
		seen[addr] = true
	}
}
