package logread

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                            {},
		"now":                         now,
		"-1h":                         now.Add(-time.Hour),
		"90m ago":                     now.Add(-90 * time.Minute),
		"2026-12-03T10:00:00Z":        time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC),
		"2026-12-03T10:00:00.5+01:00": time.Date(2026, 12, 3, 9, 0, 0, 500_000_000, time.UTC),
		"2026-12-03":                  time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC),
		"2026-12-03T10:00:00.123456Z": time.Date(2026, 12, 3, 10, 0, 0, 123_456_000, time.UTC),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-1x", "1h", "10 ago", "2026-13-01"} {
		if _, err := parseTime(in, now); err == nil {
			t.Errorf("parseTime(%q) took it", in)
		}
	}
}

func TestParseLine(t *testing.T) {
	r := parse([]byte("2026-12-03T10:00:00.000001Z shop.INFO\tan order\\nwith a newline"), false)
	if !r.ok || string(r.topic()) != "shop.INFO" || string(r.message()) != "an order\\nwith a newline" {
		t.Fatalf("text line: %+v", r)
	}
	frames, err := r.frames()
	if err != nil || len(frames) != 2 || string(frames[1]) != "an order\nwith a newline" {
		t.Fatalf("frames %q, %v", frames, err)
	}
	r = parse([]byte("2026-12-03T10:00:00.000001Z edge1 single frame"), true)
	if !r.ok || r.edge != "edge1" || len(r.topic()) != 0 || string(r.message()) != "single frame" {
		t.Fatalf("central text line: %+v", r)
	}
	r = parse([]byte(`{"edge":"e","time":"2026-12-03T10:00:00Z","endpoint":"tcp://x:1","peer":"","topic":"","message_base64":"AP8="}`), false)
	if !r.ok || r.edge != "e" || r.fields.Endpoint != "tcp://x:1" || string(r.message()) != "\x00\xff" {
		t.Fatalf("JSON line: %+v", r)
	}
	for _, bad := range []string{"", "no time here", "{not json", `{"time":"x"}`} {
		if parse([]byte(bad), false).ok {
			t.Errorf("%q parsed as the daemon's", bad)
		}
	}
}
