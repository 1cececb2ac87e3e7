package sink

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"aggregator/internal/queue"
)

func TestClockMatchesTimeFormat(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	for _, loc := range []*time.Location{time.UTC, paris} {
		c := newClock(loc)
		base := time.Date(2026, 3, 29, 0, 59, 58, 0, time.UTC) // a DST change in Paris
		for i := range 5000 {
			ts := base.Add(time.Duration(i) * 1234567 * time.Nanosecond)
			got := string(c.append(nil, ts.UnixNano()))
			want := ts.In(loc).Format("2006-01-02T15:04:05.000000Z07:00")
			if got != want {
				t.Fatalf("%s: got %s, want %s", loc, got, want)
			}
		}
	}
}

func TestTextLine(t *testing.T) {
	e := encoder{format: Text, clock: newClock(time.UTC)}
	ts := time.Date(2026, 11, 25, 3, 14, 15, 926535000, time.UTC).UnixNano()
	tests := []struct {
		name   string
		frames []string
		want   string
	}{
		{"single", []string{"lower case of HeLLo is hello"}, "2026-11-25T03:14:15.926535Z lower case of HeLLo is hello\n"},
		{"multipart", []string{"app.INFO", "started", "pid 7"}, "2026-11-25T03:14:15.926535Z app.INFO\tstarted\tpid 7\n"},
		{"multiline", []string{"a\nb"}, "2026-11-25T03:14:15.926535Z a\\nb\n"},
		{"tab inside a frame", []string{"t", "x\ty"}, "2026-11-25T03:14:15.926535Z t\tx\\ty\n"},
		{"empty", []string{""}, "2026-11-25T03:14:15.926535Z \n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := queue.Record{Time: ts}
			for _, f := range tt.frames {
				r.Frames = append(r.Frames, []byte(f))
			}
			if got := string(e.appendLine(nil, "tcp://x:1", &r)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestJSONLine(t *testing.T) {
	e := encoder{format: JSON, clock: newClock(time.UTC)}
	ts := time.Date(2026, 11, 25, 3, 14, 15, 0, time.UTC).UnixNano()
	tests := []struct {
		name      string
		frames    []string
		truncated bool
		want      map[string]any
	}{
		{"single", []string{`say "hi"` + "\n"}, false, map[string]any{"topic": "", "message": "say \"hi\"\n"}},
		{"multipart", []string{"app", "one", "two"}, false, map[string]any{"topic": "app", "message": "one\ttwo"}},
		{"binary", []string{"bin", "\xff\x00"}, false, map[string]any{"topic": "bin", "message_base64": base64.StdEncoding.EncodeToString([]byte("\xff\x00"))}},
		{"control", []string{"\x01\x7f"}, true, map[string]any{"message": "\x01\x7f", "truncated": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := queue.Record{Time: ts, Peer: "127.0.0.1", Truncated: tt.truncated}
			for _, f := range tt.frames {
				r.Frames = append(r.Frames, []byte(f))
			}
			line := e.appendLine(nil, "tcp://127.0.0.1:4444", &r)
			if strings.Count(string(line), "\n") != 1 || line[len(line)-1] != '\n' {
				t.Fatalf("not one line: %q", line)
			}
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatalf("invalid JSON %q: %v", line, err)
			}
			if got["time"] != "2026-11-25T03:14:15.000000Z" || got["endpoint"] != "tcp://127.0.0.1:4444" || got["peer"] != "127.0.0.1" {
				t.Fatalf("bad common fields: %v", got)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v (line %s)", k, got[k], v, line)
				}
			}
		})
	}
}

// FuzzJSONLine checks that any message gives one valid JSON line from which
// the exact bytes come back.
func FuzzJSONLine(f *testing.F) {
	f.Add([]byte("topic"), []byte("hello\n"))
	f.Add([]byte{}, []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, topic, msg []byte) {
		e := encoder{format: JSON, clock: newClock(time.UTC)}
		r := queue.Record{Frames: [][]byte{topic, msg}}
		line := e.appendLine(nil, "ep", &r)
		if strings.IndexByte(string(line[:len(line)-1]), '\n') >= 0 {
			t.Fatalf("raw newline in %q", line)
		}
		var got map[string]string
		if err := json.Unmarshal(line, &got); err != nil {
			// "truncated" is a bool; it is not set here.
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		check := func(name string, want []byte) {
			if v, ok := got[name]; ok {
				if v != string(want) {
					t.Fatalf("%s = %q, want %q", name, v, want)
				}
				return
			}
			b, err := base64.StdEncoding.DecodeString(got[name+"_base64"])
			if err != nil || string(b) != string(want) {
				t.Fatalf("%s_base64 = %q (%v), want %q", name, b, err, want)
			}
		}
		check("topic", topic)
		check("message", msg)
	})
}
