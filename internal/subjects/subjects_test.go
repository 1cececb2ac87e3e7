package subjects

import (
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestMatches(t *testing.T) {
	for _, tt := range []struct {
		pattern, subject string
		want             bool
	}{
		{"aggregator.lines", "aggregator.lines", true},
		{"aggregator.*", "aggregator.lines", true},
		{"aggregator.>", "aggregator.lines.x", true},
		{">", "aggregator.lines", true},
		{"aggregator.*", "aggregator.lines.x", false},
		{"other.>", "aggregator.lines", false},
		{"aggregator.lines.x", "aggregator.lines", false},
	} {
		if got := matches(tt.pattern, tt.subject); got != tt.want {
			t.Errorf("matches(%q, %q) = %v", tt.pattern, tt.subject, got)
		}
	}
}

// TestEdgeIsOneToken: whatever the edge's name, its subject has exactly
// one token more than the prefix, so the stream's PREFIX.* takes it and
// the partition transform sees the whole name.
func TestEdgeIsOneToken(t *testing.T) {
	l := Layout{Prefix: "aggregator.lines"}
	for edge, want := range map[string]string{
		"edge1":            "aggregator.lines.edge1",
		"web-01.example.n": "aggregator.lines.web-01_example_n",
		"":                 "aggregator.lines._",
		"a*b>c d\x00é":     "aggregator.lines.a_b_c_d___",
	} {
		if got := l.Edge(edge); got != want {
			t.Errorf("Edge(%q) = %q, want %q", edge, got, want)
		}
		if !matches(l.Subjects()[0], l.Edge(edge)) {
			t.Errorf("%v does not take %q", l.Subjects(), l.Edge(edge))
		}
	}
}

func TestPartitionsRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, 1024} {
		l := Layout{Prefix: "aggregator.lines", Partitions: n}
		cfg := jetstream.StreamConfig{Name: "S", Subjects: l.Subjects(), SubjectTransform: l.Transform()}
		if got := Partitions(cfg); got != n {
			t.Errorf("Partitions of %d = %d", n, got)
		}
		if err := l.SamePartitions(cfg); err != nil {
			t.Error(err)
		}
		if err := l.TakesEdges(cfg); err != nil {
			t.Error(err)
		}
		if n > 0 && l.Filter(n-1) != "aggregator.lines."+strconv.Itoa(n-1)+".*" {
			t.Errorf("Filter(%d) = %q", n-1, l.Filter(n-1))
		}
	}
	if err := (Layout{Prefix: "aggregator.lines", Partitions: 3}).SamePartitions(jetstream.StreamConfig{}); err == nil {
		t.Error("a stream without partitions passed for one with 3")
	}
	if err := (Layout{Prefix: "aggregator.lines"}).TakesEdges(jetstream.StreamConfig{Subjects: []string{"aggregator.lines"}}); err == nil {
		t.Error("a stream of aggregator.lines alone passed for one that takes the edges' subjects")
	}
}
