package logread

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

// TestCentralEdgeAndMerge: a log with a central's state beside it is read
// as a central's (the edge after the time); --edge keeps one edge's
// lines; two logs merge by time; a line not in the daemon's format is
// passed through and counted.
func TestCentralEdgeAndMerge(t *testing.T) {
	dir := t.TempDir()
	central := filepath.Join(dir, "central.log")
	other := filepath.Join(dir, "other.log")
	write := func(path, data string) {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(central, "2026-12-03T10:00:01.000000Z edge1 one\n2026-12-03T10:00:03.000000Z edge2 three\n")
	write(central+".consumed", "{}")
	write(other, "2026-12-03T10:00:02.000000Z two\nnot the daemon's\n2026-12-03T10:00:04.000000Z four\n")

	var out, errs bytes.Buffer
	res, err := Read(context.Background(), []string{central}, Options{Edge: "edge2", Output: Message}, &out, &errs)
	if err != nil || out.String() != "three\n" || res.Records != 1 {
		t.Errorf("--edge edge2: %q, %+v, %v", out.String(), res, err)
	}
	out.Reset()
	res, err = Read(context.Background(), []string{central, other}, Options{Output: Message}, &out, &errs)
	if err != nil || out.String() != "one\ntwo\nnot the daemon's\nthree\nfour\n" || res.Unparsed != 1 {
		t.Errorf("merged: %q, %+v, %v", out.String(), res, err)
	}
	out.Reset()
	since := time.Date(2026, 12, 3, 10, 0, 2, 0, time.UTC)
	Read(context.Background(), []string{dir}, Options{Since: since, Until: since.Add(2 * time.Second)}, &out, &errs)
	if out.String() != "2026-12-03T10:00:02.000000Z two\n2026-12-03T10:00:03.000000Z edge2 three\n" {
		t.Errorf("the directory, a window: %q", out.String())
	}
}
