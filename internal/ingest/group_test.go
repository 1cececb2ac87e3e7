package ingest

import (
	"slices"
	"testing"
)

func TestGroup(t *testing.T) {
	opts := []Options{
		{Endpoints: []string{"tcp://10.0.0.1:1"}},
		{Endpoints: []string{"tcp://*:2"}, Bind: true},
		{Endpoints: []string{"ipc:///run/b"}},
		{Endpoints: []string{"tcp://10.0.0.3:1"}, Pull: true},
		{Endpoints: []string{"tcp://10.0.0.4:1"}},
		{Endpoints: []string{"tcp://10.0.0.5:1", "tcp://pubhost:1"}},
		{Endpoints: []string{"tcp://10.0.0.6:01"}},
		{Endpoints: []string{"tcp://*:3"}, Bind: true},
	}
	got := Group(opts, 2)
	want := []Options{
		{Endpoints: []string{"tcp://10.0.0.1:1", "tcp://10.0.0.4:1"}},
		{Endpoints: []string{"tcp://*:2"}, Bind: true},
		{Endpoints: []string{"ipc:///run/b", "tcp://10.0.0.5:1"}},
		{Endpoints: []string{"tcp://10.0.0.3:1"}, Pull: true},
		// libzmq names these by what they resolve to after a reconnect.
		{Endpoints: []string{"tcp://pubhost:1"}},
		{Endpoints: []string{"tcp://10.0.0.6:01"}},
		{Endpoints: []string{"tcp://*:3"}, Bind: true},
	}
	if len(got) != len(want) {
		t.Fatalf("Group made %d subscribers, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if !slices.Equal(got[i].Endpoints, want[i].Endpoints) || got[i].Bind != want[i].Bind || got[i].Pull != want[i].Pull {
			t.Errorf("subscriber %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if !slices.Equal(opts[0].Endpoints, []string{"tcp://10.0.0.1:1"}) {
		t.Errorf("Group changed its input: %v", opts[0].Endpoints)
	}
}
