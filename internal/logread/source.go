package logread

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"aggregator/internal/route"
	"aggregator/internal/sink"
)

// log is one log as the daemon names it: its live path; its backups are
// found beside it.
type log struct {
	path string
	// central: the daemon that writes it is a central, whose text lines
	// carry the edge's name after their time (its state is beside it).
	central bool
}

// ownSuffixes end the names of files in a log directory that are not
// logs: backups, the daemon's state and temporary files.
var ownSuffixes = []string{".gz", ".zst", ".tmp", ".prev", ".damaged", ".forwarded", ".consumed"}

// find turns the arguments into logs: a live file, a directory of them,
// or an AGG_LOG_FILE template.
func find(args []string) ([]log, error) {
	var logs []log
	seen := map[string]bool{}
	add := func(path string) {
		if !seen[path] {
			seen[path] = true
			logs = append(logs, log{path: path, central: isCentral(path)})
		}
	}
	for _, arg := range args {
		if strings.ContainsAny(filepath.Base(arg), "{}") {
			tpl, err := route.Parse(arg)
			if err != nil {
				return nil, err
			}
			paths, err := tpl.LiveFiles()
			if err != nil {
				return nil, err
			}
			for _, p := range paths {
				add(p)
			}
			continue
		}
		info, err := os.Stat(arg)
		if err != nil {
			// A live file not there may still have backups.
			if files, ferr := sink.Files(arg); ferr == nil && len(files) > 0 {
				add(arg)
				continue
			}
			return nil, err
		}
		if !info.IsDir() {
			add(arg)
			continue
		}
		paths, err := liveFiles(arg)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			add(p)
		}
	}
	return logs, nil
}

// liveFiles lists the logs of a directory: each live file, and each log
// whose live file is gone but whose backups remain.
func liveFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var live []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || hasOwnSuffix(name) {
			continue
		}
		if _, err := sink.BackupTime(name); err == nil {
			continue // a backup, read with its live file
		}
		live = append(live, filepath.Join(dir, name))
	}
	sort.Strings(live)
	return live, nil
}

func hasOwnSuffix(name string) bool {
	for _, s := range ownSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// isCentral reports whether a central writes the log: its state is
// beside it (one file), or in its directory (a file per edge).
func isCentral(path string) bool {
	for _, state := range []string{path + ".consumed", filepath.Join(filepath.Dir(path), ".central.consumed")} {
		if _, err := os.Stat(state); err == nil {
			return true
		}
	}
	return false
}
