// Package subjects is the layout of the stream that edges and centrals
// share: the subject each edge publishes on, how the stream maps edges
// onto partitions, and what a central of one partition consumes.
//
// An edge publishes on PREFIX.EDGE (EDGE made a single subject token).
// A stream with N partitions stores each chunk as PREFIX.P.EDGE, where
// P = partition(N) of EDGE: JetStream's subject transform (nats-server
// 2.10+) computes it as the chunk arrives, deterministically, so one
// edge's chunks all land in one partition, in order, and a central of
// partition P takes them with the filter PREFIX.P.*.
package subjects

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxPartitions bounds AGG_NATS_PARTITIONS: each partition is a central.
const MaxPartitions = 1024

// Layout is the stream's subjects: Prefix (AGG_NATS_SUBJECT) and the
// number of partitions (0: none).
type Layout struct {
	Prefix     string
	Partitions int
}

// Token makes an edge's name one subject token: bytes other than ASCII
// letters, digits, '-' and '_' (a host name's dots among them) become '_'.
// Two names that differ only there share a subject, and so a partition;
// the Aggregator-Edge header still carries the name itself.
func Token(edge string) string {
	if edge == "" {
		return "_"
	}
	b := []byte(edge)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Edge is the subject an edge publishes on.
func (l Layout) Edge(edge string) string { return l.Prefix + "." + Token(edge) }

// Subjects are what a stream created for the layout takes.
func (l Layout) Subjects() []string { return []string{l.Prefix + ".*"} }

// Transform is the stream's subject transform: nil without partitions.
func (l Layout) Transform() *jetstream.SubjectTransformConfig {
	if l.Partitions == 0 {
		return nil
	}
	return &jetstream.SubjectTransformConfig{
		Source:      l.Prefix + ".*",
		Destination: fmt.Sprintf("%s.{{partition(%d,1)}}.{{wildcard(1)}}", l.Prefix, l.Partitions),
	}
}

// Filter is what the central of partition k consumes (k < 0: everything).
func (l Layout) Filter(k int) string {
	if k < 0 {
		return ""
	}
	return l.Prefix + "." + strconv.Itoa(k) + ".*"
}

// Partitions reads the number of partitions a stream's configuration
// maps its edges onto (0 without a partition transform).
func Partitions(cfg jetstream.StreamConfig) int {
	t := cfg.SubjectTransform
	if t == nil {
		return 0
	}
	_, rest, ok := strings.Cut(t.Destination, "{{partition(")
	if !ok {
		return 0
	}
	n, _, _ := strings.Cut(rest, ",")
	p, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil {
		return 0
	}
	return p
}

// TakesEdges reports whether a stream takes the subjects the edges
// publish on.
func (l Layout) TakesEdges(cfg jetstream.StreamConfig) error {
	for _, s := range cfg.Subjects {
		if matches(s, l.Edge("x")) {
			return nil
		}
	}
	return fmt.Errorf("stream %s takes subjects %v, not %s.* (AGG_NATS_SUBJECT); add it with `nats stream edit %s --subjects %s.*`",
		cfg.Name, cfg.Subjects, l.Prefix, cfg.Name, l.Prefix)
}

// SamePartitions reports whether a stream has the layout's partitions.
func (l Layout) SamePartitions(cfg jetstream.StreamConfig) error {
	if got := Partitions(cfg); got != l.Partitions {
		return fmt.Errorf("stream %s has %d partitions, AGG_NATS_PARTITIONS says %d; to change them, drain the stream and create it again (docs/centrals.md)",
			cfg.Name, got, l.Partitions)
	}
	return nil
}

// matches reports whether a NATS subject pattern (with * and >) takes
// subject.
func matches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}
