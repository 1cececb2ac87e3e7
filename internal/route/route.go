// Package route names the file each record goes to. AGG_LOG_FILE may hold
// placeholders in its file name ({topic}, {topic:N}, {endpoint}, {peer};
// on a central, {edge} and {source});
// their values come from publishers nobody vouches for, so each becomes
// part of exactly one file name in the template's directory, whatever its
// bytes (see AppendValue). Without placeholders every record goes to the
// one file, as before.
package route

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"aggregator/internal/queue"
)

// field is what a placeholder takes from a record.
type field int

const (
	literal  field = iota
	topic          // the first frame of a multipart message; none for a single frame
	endpoint       // the configured endpoint the message came in on
	peer           // the sender's address, as libzmq reports it
	edge           // on a central: the edge that received the line
	source         // on a central: the edge's own file the line was in, without its extension
)

var fields = map[string]field{"topic": topic, "endpoint": endpoint, "peer": peer, "edge": edge, "source": source}

// part is a piece of the file name: literal text or a placeholder.
type part struct {
	field    field
	text     string // literal
	segments int    // {topic:N}: the first N dot-separated segments; 0 is all
}

// Template is a parsed AGG_LOG_FILE.
type Template struct {
	path  string // as given
	dir   string
	parts []part
	holes int // placeholders
	// budget is the most bytes each value's encoding may take, so that a
	// rendered name stays within maxName.
	budget int
	peer   bool
	uses   map[field]bool
}

// OverflowValue stands for every placeholder in the name of the overflow
// file, where records go once the distinct files reach their limit. No
// value is ever encoded to it (a "%" is always followed by two hex digits
// or ends an empty value), so no publisher can write into it by name.
const OverflowValue = "%overflow"

// ownSuffixes are the endings of files the daemon keeps beside a log:
// compressed backups, temporary files, state files. A template's
// extension must not be one of them, or a file named by a value could be
// taken for one.
var ownSuffixes = []string{".gz", ".zst", ".tmp", ".prev", ".damaged", ".forwarded", ".consumed"}

// Parse reads a file path that may hold placeholders in its last element.
func Parse(path string) (*Template, error) {
	t := &Template{path: path, dir: filepath.Dir(path)}
	if strings.ContainsAny(t.dir, "{}") {
		return nil, fmt.Errorf("%s: placeholders may only be in the file name, not in its directory", path)
	}
	name := filepath.Base(path)
	for name != "" {
		open := strings.IndexByte(name, '{')
		if close := strings.IndexByte(name, '}'); close >= 0 && (open < 0 || close < open) {
			return nil, fmt.Errorf("%s: a } without its {", path)
		}
		if open < 0 {
			t.parts = append(t.parts, part{text: name})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, part{text: name[:open]})
		}
		end := strings.IndexByte(name[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("%s: a { without its }", path)
		}
		p, err := placeholder(name[open+1 : open+end])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		t.parts = append(t.parts, p)
		if t.uses == nil {
			t.uses = map[field]bool{}
		}
		t.uses[p.field] = true
		t.holes++
		t.peer = t.peer || p.field == peer
		name = name[open+end+1:]
	}
	if t.holes == 0 {
		return t, nil
	}
	literals := 0
	for _, p := range t.parts {
		literals += len(p.text)
	}
	t.budget = (maxName - literals) / t.holes
	// The extension must be the template's, not a value's: backups are
	// named "<name>-<time><extension>", and a value must never pick it.
	last := t.parts[len(t.parts)-1]
	if last.field != literal || !strings.Contains(last.text, ".") {
		return nil, fmt.Errorf("%s: the file name must end with an extension after the last placeholder, such as {topic}.log", path)
	}
	ext := filepath.Ext(last.text)
	for _, own := range ownSuffixes {
		if ext == own {
			return nil, fmt.Errorf("%s: the extension %s is the daemon's own (for backups or state); use another, such as .log", path, ext)
		}
	}
	if ext == "." || len(last.text) > maxName/2 {
		return nil, fmt.Errorf("%s: the file name's literal text is too long or its extension empty", path)
	}
	return t, nil
}

func placeholder(s string) (part, error) {
	name, arg, hasArg := strings.Cut(s, ":")
	f, ok := fields[name]
	if !ok {
		return part{}, fmt.Errorf("unknown placeholder {%s}: want {topic}, {topic:N}, {endpoint}, {peer}, {edge} or {source}", s)
	}
	p := part{field: f}
	if hasArg {
		n, err := strconv.Atoi(arg)
		if f != topic || err != nil || n < 1 || n > 9 {
			return part{}, fmt.Errorf("{%s}: only {topic:N} takes a number, the leading segments (1 to 9) of a dotted topic", s)
		}
		p.segments = n
	}
	return p, nil
}

// Static reports whether the template names one file (no placeholders).
func (t *Template) Static() bool { return t.holes == 0 }

// Path is the template as given: the file's path when Static.
func (t *Template) Path() string { return t.path }

// Dir is the directory every file of the template is in.
func (t *Template) Dir() string { return t.dir }

// NeedsPeer reports whether names need the sender's address.
func (t *Template) NeedsPeer() bool { return t.peer }

// ByEdge reports whether names use the edge ({edge}, {source}), which
// only a central knows.
func (t *Template) ByEdge() bool { return t.uses[edge] || t.uses[source] }

// BySender reports whether names use what a ZeroMQ message carries
// ({topic}, {endpoint}, {peer}), which a central's lines do not.
func (t *Template) BySender() bool { return t.uses[topic] || t.uses[endpoint] || t.uses[peer] }

// Overflow is the path of the file that takes the records of files past
// the limit of distinct files.
func (t *Template) Overflow() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.field == literal {
			b.WriteString(p.text)
		} else {
			b.WriteString(OverflowValue)
		}
	}
	return filepath.Join(t.dir, b.String())
}

// LiveFiles lists the paths of the template's live files in its
// directory now.
func (t *Template) LiveFiles() ([]string, error) {
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		if e.Type().IsRegular() && t.Match(e.Name()) {
			paths = append(paths, filepath.Join(t.dir, e.Name()))
		}
	}
	return paths, nil
}

// Match reports whether name (a file name, without its directory) may be
// the name of one of the template's live files: it starts and ends with
// the template's literal text and is neither a backup nor the daemon's own.
func (t *Template) Match(name string) bool {
	first, last := t.parts[0], t.parts[len(t.parts)-1]
	if !strings.HasPrefix(name, first.text) || !strings.HasSuffix(name, last.text) || len(name) < len(first.text)+len(last.text) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '-' && looksLikeStamp(name[i+1:]) {
			return false // a backup: values never hold a backup's time
		}
	}
	return true
}

// maxName bounds a rendered file name, below NAME_MAX (255) by what the
// daemon adds to it: a backup's "-2006-01-02T15-04-05.000" and ".zst.tmp",
// a state file's ".forwarded.prev" and a temporary file's random suffix.
const maxName = 200

// AppendName appends the file name (not the directory) of r's file to dst.
func (t *Template) AppendName(dst []byte, r *queue.Record) []byte {
	budget := t.budget
	for _, p := range t.parts {
		switch p.field {
		case literal:
			dst = append(dst, p.text...)
		case topic:
			var v []byte
			if len(r.Frames) > 1 {
				v = leading(r.Frames[0], p.segments)
			}
			dst = AppendValue(dst, v, budget)
		case endpoint:
			dst = AppendValue(dst, r.Endpoint, budget)
		case peer:
			dst = AppendValue(dst, r.Peer, budget)
		case edge:
			dst = AppendValue(dst, r.Edge, budget)
		case source:
			dst = AppendValue(dst, r.Source, budget)
		}
	}
	return dst
}

// AppendKey appends to dst what the name of r's file is made of: the raw
// value of each placeholder (as AppendName takes it), each after its
// length. Records with equal keys have the same file; a writer looks a
// file up by its key without encoding its name.
func (t *Template) AppendKey(dst []byte, r *queue.Record) []byte {
	for _, p := range t.parts {
		switch p.field {
		case topic:
			var v []byte
			if len(r.Frames) > 1 {
				v = leading(r.Frames[0], p.segments)
			}
			dst = appendSized(dst, v)
		case endpoint:
			dst = appendSized(dst, r.Endpoint)
		case peer:
			dst = appendSized(dst, r.Peer)
		case edge:
			dst = appendSized(dst, r.Edge)
		case source:
			dst = appendSized(dst, r.Source)
		}
	}
	return dst
}

func appendSized[T string | []byte](dst []byte, v T) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(v))), v...)
}

// leading is the first n dot-separated segments of topic (all when n is 0):
// "shop" of "shop.INFO" for n = 1.
func leading(topic []byte, n int) []byte {
	if n == 0 {
		return topic
	}
	for i, c := range topic {
		if c == '.' {
			if n--; n == 0 {
				return topic[:i]
			}
		}
	}
	return topic
}
