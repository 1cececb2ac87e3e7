// Package statefile keeps the small files a daemon resumes from after a
// crash (the forwarder's checkpoint, the central's consumed position) so
// that a SIGKILL or a power cut leaves the last state saved or the one
// before it, never an empty or half-written one taken for either.
//
// A save writes a temporary file and syncs it, keeps the current file as
// NAME.prev, renames the new one into place and syncs the directory: the
// rename, not the write, is the moment the new state exists, and only once
// the directory is synced does that moment survive a power cut. Each file
// carries a checksum of its content, so a file damaged by a disk, a
// truncation or a hand is told from a valid one; Load then falls back to
// the previous state, which the callers can resume from safely (they
// recognise what they did after it).
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// Source says which file Load took the state from.
type Source int

const (
	None     Source = iota // no state: a first start
	Current                // the last state saved
	Previous               // the one before: the last was missing or damaged
)

func (s Source) String() string {
	return [...]string{"none", "current", "previous"}[s]
}

// ErrDamaged is returned by Load when a state exists but neither it nor
// the previous one can be read.
var ErrDamaged = errors.New("state file damaged")

// envelope is what is on disk: the state and the CRC-32C of its bytes.
type envelope struct {
	State json.RawMessage `json:"state"`
	CRC   *uint32         `json:"crc32c"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save writes v to path durably (see the package comment).
func Save(path string, v any) error {
	state, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sum := crc32.Checksum(state, castagnoli)
	data, err := json.Marshal(envelope{State: state, CRC: &sum})
	if err != nil {
		return err
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(path, path+".prev"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.Remove(tmp.Name())
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return SyncDir(dir)
}

// Load reads into v the last state saved at path, or, when that is missing
// or damaged, the one before. It returns None and leaves v alone when
// neither exists, and ErrDamaged when one exists and none can be read.
func Load(path string, v any) (Source, error) {
	from := Current
	state, errCur := read(path)
	if errCur != nil {
		var errPrev error
		from = Previous
		state, errPrev = read(path + ".prev")
		if errPrev != nil {
			if errors.Is(errCur, fs.ErrNotExist) && errors.Is(errPrev, fs.ErrNotExist) {
				return None, nil
			}
			for _, err := range []error{errCur, errPrev} {
				if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrDamaged) {
					return None, err // unreadable: say so rather than guess
				}
			}
			return None, fmt.Errorf("%w: %v; %v", ErrDamaged, errCur, errPrev)
		}
	}
	if err := json.Unmarshal(state, v); err != nil {
		return None, fmt.Errorf("%s: %w: %v", path, ErrDamaged, err)
	}
	if from == Previous && errors.Is(errCur, ErrDamaged) {
		// Set aside, for a look, and so that the next Save does not keep
		// it as the previous state.
		if err := os.Rename(path, path+".damaged"); err != nil {
			return None, err
		}
	}
	return from, nil
}

// read returns the state a file holds, checked against its checksum. A
// file of the versions before checksums (the state's JSON alone) is taken
// as it is, so that an upgrade resumes where it was.
func read(path string) (json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrDamaged, err)
	}
	switch {
	case env.CRC == nil && env.State == nil:
		return data, nil // the state alone, as saved before checksums
	case env.CRC == nil || env.State == nil:
		return nil, fmt.Errorf("%s: %w: no checksum", path, ErrDamaged)
	case crc32.Checksum(env.State, castagnoli) != *env.CRC:
		return nil, fmt.Errorf("%s: %w: checksum mismatch", path, ErrDamaged)
	}
	return env.State, nil
}

// SyncDir makes the entries of dir (files created, renamed or removed in
// it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
