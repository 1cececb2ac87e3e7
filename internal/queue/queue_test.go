package queue

import "testing"

type memory struct{ resets, releases int }

func (m *memory) Reset()   { m.resets++ }
func (m *memory) Release() { m.releases++ }

// A batch comes back empty, its memory reset; a consumer's window-sized
// records array is not kept for the next producer; Close frees the memory
// of the batches kept for reuse.
func TestRecycleAndClose(t *testing.T) {
	q := NewQueue(2)
	b := q.Get()
	m := &memory{}
	b.Mem = m
	b.Records = append(b.Records, Record{Frames: [][]byte{[]byte("x")}})
	b.Raw, b.Durable = true, true
	q.Send(b)
	q.Taken(<-q.C)
	q.Recycle(b)
	if len(b.Records) != 0 || b.Raw || b.Durable || m.resets != 1 {
		t.Errorf("recycled batch: %d records, raw %v, durable %v, %d resets", len(b.Records), b.Raw, b.Durable, m.resets)
	}
	if q.Waiting() != 0 {
		t.Errorf("waiting %d", q.Waiting())
	}

	big := q.Get()
	big.Records = make([]Record, 64000)
	q.Recycle(big)
	if c := cap(big.Records); c > initialRecords {
		t.Errorf("a window's array of %d records kept for reuse", c)
	}

	q.Close()
	if m.releases != 1 {
		t.Errorf("%d releases after Close, want 1", m.releases)
	}
}
