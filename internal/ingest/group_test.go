package ingest

import (
	"slices"
	"testing"
)

func TestGroup(t *testing.T) {
	opts := []Options{
		{Endpoints: []string{"tcp://a:1"}},
		{Endpoints: []string{"tcp://*:2"}, Bind: true},
		{Endpoints: []string{"tcp://b:1"}},
		{Endpoints: []string{"tcp://c:1"}, Pull: true},
		{Endpoints: []string{"tcp://d:1"}},
		{Endpoints: []string{"tcp://e:1", "tcp://f:1"}},
		{Endpoints: []string{"tcp://*:3"}, Bind: true},
	}
	got := Group(opts, 2)
	want := []Options{
		{Endpoints: []string{"tcp://a:1", "tcp://d:1", "tcp://f:1"}},
		{Endpoints: []string{"tcp://*:2"}, Bind: true},
		{Endpoints: []string{"tcp://b:1", "tcp://e:1"}},
		{Endpoints: []string{"tcp://c:1"}, Pull: true},
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
	if !slices.Equal(opts[0].Endpoints, []string{"tcp://a:1"}) {
		t.Errorf("Group changed its input: %v", opts[0].Endpoints)
	}
}
