package ingest

import "testing"

func testSources() (*sources, *endpoint, *endpoint) {
	a := &endpoint{name: "tcp://10.0.0.1:5555", stats: &endpointStats{}}
	b := &endpoint{name: "tcp://10.0.0.2:5555", stats: &endpointStats{}}
	s := newSources([]*endpoint{a, b}, func() *endpoint {
		return &endpoint{name: Unattributed, stats: &endpointStats{}}
	})
	s.refresh = func() {}
	return s, a, b
}

// The sequences of monitor events around a reused descriptor, and what a
// message on it is counted as.
func TestSourcesDescriptorReuse(t *testing.T) {
	for _, tt := range []struct {
		name  string
		steps func(t *testing.T, s *sources, a, b *endpoint)
		want  string // the endpoint of a message on descriptor 40 then
	}{
		{"open", func(t *testing.T, s *sources, a, b *endpoint) {
			s.connected(40, a)
		}, "tcp://10.0.0.1:5555"},
		{"closed, leftovers still A's", func(t *testing.T, s *sources, a, b *endpoint) {
			s.connected(40, a)
			s.disconnected(40)
		}, "tcp://10.0.0.1:5555"},
		{"A's reconnection on its own descriptor", func(t *testing.T, s *sources, a, b *endpoint) {
			s.connected(40, a)
			s.disconnected(40)
			s.connected(40, a)
		}, "tcp://10.0.0.1:5555"},
		{"another endpoint before the socket was read empty", func(t *testing.T, s *sources, a, b *endpoint) {
			s.connected(40, a)
			s.disconnected(40)
			s.connected(40, b)
		}, Unattributed},
		{"another endpoint flapping on it stays in doubt", func(t *testing.T, s *sources, a, b *endpoint) {
			s.connected(40, a)
			s.disconnected(40)
			s.connected(40, b)
			s.disconnected(40)
			s.connected(40, b)
		}, Unattributed},
		{"another endpoint after the socket was read empty", func(t *testing.T, s *sources, a, b *endpoint) {
			s.connected(40, a)
			s.disconnected(40)
			s.emptied(s.closingMark())
			s.connected(40, b)
		}, "tcp://10.0.0.2:5555"},
		{"read empty after the reuse: the doubt is over", func(t *testing.T, s *sources, a, b *endpoint) {
			s.connected(40, a)
			mark := s.closingMark()
			s.disconnected(40)
			s.connected(40, b)
			s.emptied(mark) // the read began before A closed: A may still have messages
			if s.of(40).name != Unattributed {
				t.Error("doubt ended by a read that began before the close")
			}
			s.emptied(s.closingMark())
		}, "tcp://10.0.0.2:5555"},
		{"unknown descriptor", func(t *testing.T, s *sources, a, b *endpoint) {}, Unattributed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, a, b := testSources()
			tt.steps(t, s, a, b)
			if got := s.of(40).name; got != tt.want {
				t.Errorf("message on 40 counted for %s, want %s", got, tt.want)
			}
			if got := s.of(-1).name; got != Unattributed {
				t.Errorf("message without a descriptor counted for %s", got)
			}
		})
	}
}

func TestSourcesEvents(t *testing.T) {
	s, a, b := testSources()
	if ep := s.ofEvent(b.name, 0, false); ep != b {
		t.Errorf("event for %s counted for %s", b.name, ep.name)
	}
	s.connected(40, a)
	// A disconnection follows the descriptor, whatever the address says.
	if ep := s.ofEvent(b.name, 40, true); ep != a {
		t.Errorf("disconnection on A's descriptor counted for %s", ep.name)
	}
	if ep := s.ofEvent("tcp://10.9.9.9:1", 0, false); ep.name != Unattributed {
		t.Errorf("event for an unknown address counted for %s", ep.name)
	}
}
