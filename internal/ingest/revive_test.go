package ingest

import (
	"testing"
	"time"
)

// An endpoint restarted again and again waits twice as long each time, up
// to restartBackoffMax; a connection that stays up starts it over.
func TestReviveBackoff(t *testing.T) {
	s := &Subscriber{opt: Options{ReconnectMax: time.Second}, src: newSources([]*endpoint{{}}, nil)}
	ep := &endpoint{}
	for restarts, want := range []time.Duration{3 * time.Second, 6 * time.Second, 12 * time.Second} {
		ep.restarts = restarts
		if got := s.reviveAfter(ep); got != want {
			t.Errorf("after %d restarts: %s, want %s", restarts, got, want)
		}
	}
	ep.restarts = 1000
	if got := s.reviveAfter(ep); got != restartBackoffMax {
		t.Errorf("after 1000 restarts: %s, want %s", got, restartBackoffMax)
	}
	now := time.Now()
	s.wentUp(ep, now)
	ep.conns = 0
	s.wentDown(ep, now.Add(stayedUp))
	if ep.restarts != 0 {
		t.Errorf("restarts %d after a connection that stayed up, want 0", ep.restarts)
	}
}
