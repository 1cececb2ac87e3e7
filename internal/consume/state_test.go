package consume

import (
	"fmt"
	"testing"
)

// TestFreshKnowsWhatIsHeld: a chunk sent again is recognised whole or in
// part, per edge file; past filesHeld files, the one written least
// recently is forgotten, not the one just written.
func TestFreshKnowsWhatIsHeld(t *testing.T) {
	st := state{Edges: map[string][]held{}}
	chunk := []byte("a\nb\n")
	st.Seq = 1
	if got := st.fresh("e1/shop", "seg1", 0, chunk); string(got) != "a\nb\n" {
		t.Fatalf("first chunk: %q", got)
	}
	st.Seq = 2
	if got := st.fresh("e1/shop", "seg1", 0, chunk); got != nil {
		t.Fatalf("the same chunk again: %q", got)
	}
	if got := st.fresh("e1/shop", "seg1", 2, []byte("b\nc\n")); string(got) != "c\n" {
		t.Fatalf("an overlapping chunk: %q", got)
	}
	if got := st.fresh("e1/cart", "seg1", 0, chunk); string(got) != "a\nb\n" {
		t.Fatalf("another file of the edge with the same segment: %q", got)
	}
	for i := range filesHeld {
		st.Seq = uint64(10 + i)
		st.fresh(fmt.Sprintf("e2/f%d", i), "s", 0, chunk)
	}
	if len(st.Edges) != filesHeld {
		t.Fatalf("%d files held, want %d", len(st.Edges), filesHeld)
	}
	if _, ok := st.Edges["e1/shop"]; ok {
		t.Error("the file written least recently is still held")
	}
	if _, ok := st.Edges[fmt.Sprintf("e2/f%d", filesHeld-1)]; !ok {
		t.Error("the file just written is forgotten")
	}
}
