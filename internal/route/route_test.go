package route

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"aggregator/internal/queue"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, path, err string
	}{
		{"no placeholder", "/var/log/aggregator/subscriber.log", ""},
		{"topic", "/var/log/aggregator/{topic}.log", ""},
		{"leading segment", "/var/log/aggregator/{topic:1}.log", ""},
		{"several", "/var/log/a/{endpoint}-{topic}-{peer}.app.log", ""},
		{"in the directory", "/var/log/{topic}/x.log", "only be in the file name"},
		{"unknown", "/var/log/{host}.log", "unknown placeholder {host}"},
		{"number on endpoint", "/var/log/{endpoint:2}.log", "only {topic:N} takes a number"},
		{"number out of range", "/var/log/{topic:0}.log", "only {topic:N}"},
		{"unclosed", "/var/log/{topic.log", "a { without its }"},
		{"unopened", "/var/log/topic}.log", "a } without its {"},
		{"no extension", "/var/log/{topic}", "must end with an extension"},
		{"extension from the value", "/var/log/{topic}-log", "must end with an extension"},
		{"daemon's own extension", "/var/log/{topic}.gz", "the daemon's own"},
		{"state extension", "/var/log/{topic}.forwarded", "the daemon's own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.path)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Parse(%q): %v", tc.path, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Parse(%q) = %v, want an error with %q", tc.path, err, tc.err)
			}
		})
	}
}

func record(topic string, frames ...string) *queue.Record {
	r := &queue.Record{Endpoint: "tcp://127.0.0.1:5555", Peer: "10.0.0.7"}
	if topic != "\x00none" {
		r.Frames = append(r.Frames, []byte(topic))
	}
	for _, f := range frames {
		r.Frames = append(r.Frames, []byte(f))
	}
	return r
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		name, template string
		rec            *queue.Record
		want           string
	}{
		{"topic", "{topic}.log", record("shop.INFO", "m"), "shop.INFO.log"},
		{"leading segment", "{topic:1}.log", record("shop.INFO", "m"), "shop.log"},
		{"two segments of one", "{topic:2}.log", record("shop", "m"), "shop.log"},
		{"single frame has no topic", "{topic}.log", record("\x00none", "just a line"), "%.log"},
		{"endpoint", "{endpoint}.log", record("t", "m"), "tcp%3A%2F%2F127.0.0.1%3A5555.log"},
		{"peer", "in-{peer}.log", record("t", "m"), "in-10.0.0.7.log"},
		{"slash and dots", "{topic}.log", record("../../etc/passwd", "m"), "%2E.%2F..%2Fetc%2Fpasswd.log"},
		{"dot", "{topic}.log", record(".", "m"), "%2E.log"},
		{"dot dot", "{topic}.log", record("..", "m"), "%2E..log"},
		{"empty", "{topic}.log", record("", "m"), "%.log"},
		{"NUL and control", "{topic}.log", record("a\x00b\x1b[31m", "m"), "a%00b%1B%5B31m.log"},
		{"percent", "{topic}.log", record("100%", "m"), "100%25.log"},
		{"invalid UTF-8", "{topic}.log", record("\xff\xfe", "m"), "%FF%FE.log"},
		{"non-ASCII", "{topic}.log", record("é", "m"), "%C3%A9.log"},
		{"backup look-alike", "{topic}.log", record("shop-2026-12-03T08-00-00.000", "m"), "shop%2D2026-12-03T08-00-00.000.log"},
		{"ordinary dash", "{topic}.log", record("my-shop", "m"), "my-shop.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := Parse(filepath.Join("/logs", tc.template))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(tpl.AppendName(nil, tc.rec)); got != tc.want {
				t.Fatalf("name %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLongValuesAreCutAndKeptApart(t *testing.T) {
	tpl, err := Parse("/logs/{topic}.log")
	if err != nil {
		t.Fatal(err)
	}
	a := strings.Repeat("x", 300)
	b := a[:299] + "y"
	na, nb := string(tpl.AppendName(nil, record(a, "m"))), string(tpl.AppendName(nil, record(b, "m")))
	if len(na) > maxName || len(nb) > maxName {
		t.Fatalf("names of %d and %d bytes, want at most %d", len(na), len(nb), maxName)
	}
	if na == nb {
		t.Fatalf("two long topics share the file %s", na)
	}
	// A cut inside an escape would leave a broken %X.
	c := strings.Repeat("/", 300)
	nc := string(tpl.AppendName(nil, record(c, "m")))
	if v, cut, err := DecodeValue(strings.TrimSuffix(nc, ".log")); err != nil || !cut || strings.Trim(string(v), "/") != "" {
		t.Fatalf("%s decodes to %q, cut %v, %v", nc, v, cut, err)
	}
}

func TestOverflowNameIsNoValues(t *testing.T) {
	tpl, err := Parse("/logs/app-{topic}-{endpoint}.log")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tpl.Overflow(), "/logs/app-%overflow-%overflow.log"; got != want {
		t.Fatalf("overflow %s, want %s", got, want)
	}
}

func FuzzValue(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a/b", "x\x00y", "shop-2026-12-03T08", "100%", strings.Repeat("é", 200)} {
		f.Add([]byte(s), 200)
	}
	f.Fuzz(func(t *testing.T, v []byte, budget int) {
		budget = max(budget%300, 0)
		enc := AppendValue(nil, v, budget)
		if bytes.ContainsAny(enc, "/\x00") || string(enc) == "." || string(enc) == ".." || (len(enc) > 0 && enc[0] == '.') {
			t.Fatalf("%q encodes to the unsafe %q", v, enc)
		}
		if containsStamp(enc) {
			t.Fatalf("%q encodes to %q, which holds a backup's time", v, enc)
		}
		dec, cut, err := DecodeValue(string(enc))
		if err != nil {
			t.Fatalf("%q encodes to %q, which does not decode: %v", v, enc, err)
		}
		if !cut && !bytes.Equal(dec, v) {
			t.Fatalf("%q encodes to %q, which decodes to %q", v, enc, dec)
		}
		if cut && (len(enc) > max(budget, 17) || !bytes.HasPrefix(v, dec)) {
			t.Fatalf("%q cut to %q (budget %d) decodes to %q", v, enc, budget, dec)
		}
	})
}

// containsStamp reports whether a "-" followed by a backup's time is in b.
func containsStamp(b []byte) bool {
	for i, c := range b {
		if c == '-' && looksLikeStamp(b[i+1:]) {
			return true
		}
	}
	return false
}

// TestKeysDecideAsNamesDo: records that share a key share a file name
// (the writer finds files by key first), whatever the template takes of
// them: a topic's leading segments, several placeholders, a topic that is
// absent or empty, values that end inside another's. Records with one name
// may have two keys ("a"+"bc" and "ab"+"c" under {topic}{endpoint}): the
// writer then finds the file by its name.
func TestKeysDecideAsNamesDo(t *testing.T) {
	var recs []*queue.Record
	for _, topic := range []string{"shop.INFO", "shop.WARN", "shop", "shopx", "", "a", "ab", "a.b.c", "\x00none", strings.Repeat("x", 300)} {
		for _, endpoint := range []string{"tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556", "", "b", "bc", "c"} {
			r := record(topic, "m")
			r.Endpoint = endpoint
			recs = append(recs, r)
		}
	}
	for _, template := range []string{"{topic}.log", "{topic:1}.log", "{topic:2}.log", "{topic}-{endpoint}.log", "{endpoint}{topic}.log", "{topic}{endpoint}.log", "{topic:1}.{topic}.log"} {
		tpl, err := Parse(filepath.Join("/logs", template))
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]string{}
		for _, r := range recs {
			key, name := string(tpl.AppendKey(nil, r)), string(tpl.AppendName(nil, r))
			if other, ok := names[key]; ok && other != name {
				t.Errorf("%s: one key for the names %q and %q", template, other, name)
			}
			names[key] = name
		}
	}
}
