package sink

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Files lists the files holding the lines of the log at path, oldest
// first: rotated backups (compressed or not), then the live file. A backup
// caught between compression and the removal of its original is listed
// once, uncompressed. Tests and the benchmark's verifier read the log
// through it.
func Files(path string) ([]string, error) {
	dir := filepath.Dir(path)
	pattern := backupPattern(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	for _, e := range entries {
		present[e.Name()] = true
	}
	var backups []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case pattern.MatchString(name):
			backups = append(backups, name)
		default:
			for _, suffix := range compressedSuffixes {
				if base, ok := strings.CutSuffix(name, suffix); ok && pattern.MatchString(base) && !present[base] {
					backups = append(backups, name)
				}
			}
		}
	}
	sort.Strings(backups)
	out := make([]string, 0, len(backups)+1)
	for _, b := range backups {
		out = append(out, filepath.Join(dir, b))
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return out, nil
}

// Open opens one of the files Files lists, decompressing a .gz or .zst.
func Open(name string) (io.ReadCloser, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".gz") && !strings.HasSuffix(name, ".zst") {
		return f, nil
	}
	return decompressing(name, f, f)
}

// decompressing reads r (all or part of the file f) through the
// decompressor name's suffix tells; closing it closes f too.
func decompressing(name string, r io.Reader, f *os.File) (io.ReadCloser, error) {
	zr, err := decompress(name, r)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, closers{zr, f}}, nil
}

// closers closes the decompressor, then the file.
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// ReadLines calls fn with every line of the log at path, oldest file
// first, without its newline. The line is only valid during the call. A
// file that does not end with a whole line is an error: the writer never
// leaves one.
func ReadLines(path string, fn func(file string, line []byte)) error {
	files, err := Files(path)
	if err != nil {
		return err
	}
	for _, name := range files {
		if err := readFileLines(name, fn); err != nil {
			return err
		}
	}
	return nil
}

func readFileLines(name string, fn func(file string, line []byte)) error {
	rc, err := Open(name)
	if err != nil {
		return err
	}
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				return fmt.Errorf("%s ends in the middle of a line", name)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fn(name, line[:len(line)-1])
	}
}
