package statefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type pos struct {
	Seq uint64 `json:"seq"`
}

func TestSaveLoadAndFallBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".consumed")
	var got pos
	if from, err := Load(path, &got); err != nil || from != None {
		t.Fatalf("first start: %v %v", from, err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := Save(path, pos{seq}); err != nil {
			t.Fatal(err)
		}
	}
	if from, err := Load(path, &got); err != nil || from != Current || got.Seq != 3 {
		t.Fatalf("got %+v from %v: %v", got, from, err)
	}

	// A damaged file of each kind falls back to the state before it.
	data, _ := os.ReadFile(path)
	for name, damaged := range map[string][]byte{
		"empty":     nil,
		"truncated": data[:len(data)/2],
		"flipped":   append([]byte(nil), data...),
	} {
		if name == "flipped" {
			damaged[len(damaged)-4] ^= 1
		}
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		got = pos{}
		if from, err := Load(path, &got); err != nil || from != Previous || got.Seq != 2 {
			t.Errorf("%s: got %+v from %v: %v", name, got, from, err)
		}
		if _, err := os.Stat(path + ".damaged"); err != nil {
			t.Errorf("%s: not set aside: %v", name, err)
		}
		os.WriteFile(path, data, 0o600)
	}
	// The next save after a fall back keeps the good state as the one before.
	os.WriteFile(path, nil, 0o600)
	Load(path, &got)
	if err := Save(path, pos{4}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, nil, 0o600)
	if from, err := Load(path, &got); err != nil || from != Previous || got.Seq != 2 {
		t.Errorf("after a fall back and a save: got %+v from %v: %v", got, from, err)
	}
	if err := Save(path, pos{3}); err != nil {
		t.Fatal(err)
	}

	// The current missing (a crash between the two renames): the previous.
	os.Remove(path)
	if from, err := Load(path, &got); err != nil || from != Previous || got.Seq != 2 {
		t.Errorf("missing: got %+v from %v: %v", got, from, err)
	}

	// Both damaged: an error, never a first start.
	os.WriteFile(path, []byte("{"), 0o600)
	os.WriteFile(path+".prev", nil, 0o600)
	if from, err := Load(path, &got); !errors.Is(err, ErrDamaged) || from != None {
		t.Errorf("both damaged: %v %v", from, err)
	}
}

func TestLoadsStateWithoutChecksum(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".forwarded")
	os.WriteFile(path, []byte(`{"seq":7}`), 0o600)
	var got pos
	if from, err := Load(path, &got); err != nil || from != Current || got.Seq != 7 {
		t.Fatalf("got %+v from %v: %v", got, from, err)
	}
}
