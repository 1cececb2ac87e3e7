package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aggregator/internal/queue"
	"aggregator/internal/route"
	"aggregator/internal/sink"
)

// bodies reads the log at path (backups first) and returns each line's
// last frame, in order.
func bodies(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	err := sink.ReadLines(path, func(_ string, line []byte) {
		if i := bytes.LastIndexByte(line, '\t'); i >= 0 {
			line = line[i+1:]
		}
		out = append(out, string(line))
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fileOf is where the daemon writes a message with this topic.
func fileOf(t *testing.T, template, topic string) string {
	t.Helper()
	tpl, err := route.Parse(template)
	if err != nil {
		t.Fatal(err)
	}
	name := tpl.AppendName(nil, &queue.Record{Frames: [][]byte{[]byte(topic), []byte("x")}})
	return filepath.Join(tpl.Dir(), string(name))
}

// TestFilePerTopic: 50 topics go to 50 files, each with its own lines in
// order; a busy one rotates and compresses on its own; hostile topics stay
// inside the directory, each in a file of its own; a symbolic link planted
// at a topic's name is not followed.
func TestFilePerTopic(t *testing.T) {
	skipShort(t)
	root := t.TempDir()
	dir := filepath.Join(root, "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	template := filepath.Join(dir, "{topic}.log")
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "planted.log")); err != nil {
		t.Fatal(err)
	}
	_, bindEP := publishers(t)
	p := startAgg(t, map[string]string{
		"AGG_BIND": bindEP, "AGG_LOG_FILE": template,
		"AGG_MAX_SIZE_MB": "1", "AGG_MAX_BACKUPS": "0", "AGG_COMPRESS": "gzip",
	})
	pub := connectTo(t, bindEP)
	subscribed(t, pub)

	const topics, each, busy = 50, 400, 25_000
	pad := strings.Repeat("p", 80)
	sent := 0
	send := func(topic, body string) {
		t.Helper()
		if err := pub.Send([]byte(topic), []byte(body)); err != nil {
			t.Fatal(err)
		}
		if sent++; sent%500 == 0 {
			time.Sleep(2 * time.Millisecond) // PUB drops past its high-water mark
		}
	}
	for i := range busy {
		send("busy.DEBUG", fmt.Sprintf("busy-%d %s", i, pad))
		if i < topics*each {
			send(fmt.Sprintf("svc%02d.INFO", i%topics), fmt.Sprintf("svc%02d-%d", i%topics, i/topics))
		}
	}
	hostile := []string{"../../x", "a/b", "", "\x00", ".", "..", strings.Repeat("L", 300), "\x1b[31mred", "-2026-12-03T08-00-00.000", "%overflow"}
	for i, topic := range hostile {
		send(topic, fmt.Sprintf("hostile-%d", i))
	}
	send("planted", "not-in-the-victim")
	total := busy + topics*each + len(hostile) + 1
	p.waitMetric("aggregator_lines_written_total", float64(total-1)) // the planted link's is dropped
	rotations := p.metric(`aggregator_rotations_total{reason="size"}`)
	if p.metric(`aggregator_messages_dropped_total{reason="write_error"}`) != 1 {
		t.Errorf("the line for the planted link is not counted as dropped")
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}

	for s := range topics {
		got := bodies(t, filepath.Join(dir, fmt.Sprintf("svc%02d.INFO.log", s)))
		if len(got) != each {
			t.Fatalf("svc%02d: %d lines, want %d", s, len(got), each)
		}
		for i, b := range got {
			if want := fmt.Sprintf("svc%02d-%d", s, i); b != want {
				t.Fatalf("svc%02d line %d is %q, want %q", s, i, b, want)
			}
		}
	}
	busyLog := filepath.Join(dir, "busy.DEBUG.log")
	got := bodies(t, busyLog)
	if len(got) != busy {
		t.Fatalf("busy: %d lines, want %d", len(got), busy)
	}
	for i, b := range got {
		if want := fmt.Sprintf("busy-%d %s", i, pad); b != want {
			t.Fatalf("busy line %d is %q, want %q", i, b, want)
		}
	}
	files, _ := sink.Files(busyLog)
	if len(files) < 3 || !strings.HasSuffix(files[0], ".gz") {
		t.Errorf("busy topic: files %v, want at least two compressed backups", files)
	}
	if rotations != float64(len(files)-1) {
		t.Errorf("%v size rotations, but only the busy topic's %d backups", rotations, len(files)-1)
	}

	for i, topic := range hostile {
		path := fileOf(t, template, topic)
		if filepath.Dir(path) != dir {
			t.Fatalf("topic %q goes to %s, outside %s", topic, path, dir)
		}
		if got := bodies(t, path); len(got) != 1 || got[0] != fmt.Sprintf("hostile-%d", i) {
			t.Errorf("topic %q: %s holds %q", topic, filepath.Base(path), got)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 2 {
		t.Errorf("files beside the log directory: %v", entries)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.Type().IsRegular() && e.Name() != "planted.log" {
			t.Errorf("%s is not a regular file", e.Name())
		}
	}
	if data, _ := os.ReadFile(victim); len(data) != 0 {
		t.Errorf("the planted link was followed: %q", data)
	}
}

// TestFilePerTopicBounds: 5,000 topics past AGG_MAX_FILES=100 go to the
// overflow file, none dropped, and the daemon never has more than
// AGG_MAX_OPEN_FILES log files open.
func TestFilePerTopicBounds(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	template := filepath.Join(dir, "{topic}.log")
	_, bindEP := publishers(t)
	p := startAgg(t, map[string]string{
		"AGG_BIND": bindEP, "AGG_LOG_FILE": template, "AGG_MAX_FILES": "100", "AGG_MAX_OPEN_FILES": "16",
	})
	pub := connectTo(t, bindEP)
	subscribed(t, pub)
	const topics = 5000
	most := 0
	for i := range topics {
		if err := pub.Send([]byte(fmt.Sprintf("t%04d", i)), []byte(fmt.Sprintf("m%04d", i))); err != nil {
			t.Fatal(err)
		}
		if i%250 == 249 {
			time.Sleep(5 * time.Millisecond)
			most = max(most, openIn(t, p.cmd.Process.Pid, dir))
		}
	}
	p.waitMetric("aggregator_lines_written_total", topics)
	if most > 16 || p.metric("aggregator_files_open") > 16 {
		t.Errorf("%d log files open at once (gauge %v), want at most 16", most, p.metric("aggregator_files_open"))
	}
	if got := p.metric("aggregator_route_overflow_total"); got != topics-100 {
		t.Errorf("overflow %v, want %d", got, topics-100)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	for i := range 100 {
		if got := bodies(t, filepath.Join(dir, fmt.Sprintf("t%04d.log", i))); len(got) != 1 || got[0] != fmt.Sprintf("m%04d", i) {
			t.Fatalf("t%04d.log holds %q", i, got)
		}
	}
	over := bodies(t, filepath.Join(dir, route.OverflowValue+".log"))
	if len(over) != topics-100 || over[0] != "m0100" || over[len(over)-1] != fmt.Sprintf("m%04d", topics-1) {
		t.Fatalf("overflow file holds %d lines (%v...), want %d", len(over), over[:min(3, len(over))], topics-100)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 101 {
		t.Errorf("%d files, want 100 and the overflow", len(entries))
	}
}

// openIn counts the files in dir that process pid has open (each open log
// file has two descriptors: lumberjack's and the writer's, to sync).
func openIn(t *testing.T, pid int, dir string) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			open[target] = true
		}
	}
	return len(open)
}
