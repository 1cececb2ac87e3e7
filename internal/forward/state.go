package forward

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

func (f *Forwarder) load() (checkpoint, error) {
	var cp checkpoint
	err := LoadState(f.checkFile, &cp)
	return cp, err
}

// LoadState reads what SaveState wrote into v; a file not there leaves v
// as it is (a first start).
func LoadState(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// save writes the checkpoint.
func (f *Forwarder) save(cp checkpoint) error { return SaveState(f.checkFile, cp) }

// SaveState writes v as JSON to path through a temporary file renamed
// into place: a crash leaves the old state or the new, never half of one.
// The central's consumer keeps its state the same way.
func SaveState(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
