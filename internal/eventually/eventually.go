// Package eventually waits, in tests, for a condition that real processes,
// sockets and files make true in their own time: a deadline loop instead
// of a sleep.
package eventually

import (
	"testing"
	"time"
)

// Within polls ok every 20 ms and fails the test if it is not true
// within d; what says what was awaited.
func Within(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
