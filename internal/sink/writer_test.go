package sink

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"aggregator/internal/eventually"
	"aggregator/internal/queue"
	"aggregator/internal/route"
)

type harness struct {
	w       *Writer
	q       *queue.Queue
	m       *Metrics
	dropped *prometheus.CounterVec
	path    string
	reopen  chan struct{}
	done    chan error
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends component logs to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a writer on a fresh directory with opt (Path is filled in).
func start(t *testing.T, opt Options) *harness {
	t.Helper()
	if opt.Path == "" {
		opt.Path = filepath.Join(t.TempDir(), "subscriber.log")
	}
	if opt.MaxSizeMB == 0 {
		opt.MaxSizeMB = 100
	}
	reg := prometheus.NewRegistry()
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped_total"}, []string{"reason"})
	m := NewMetrics(reg, dropped)
	w, err := New(opt, m, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &harness{w: w, q: queue.NewQueue(8), m: m, dropped: dropped, path: opt.Path,
		reopen: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() { h.done <- w.Run(h.q, h.reopen) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// feed sends records "msg-<seq> <pad>" for seq in [from, to).
func (h *harness) feed(from, to int, pad string) {
	b := h.q.Get()
	for seq := from; seq < to; seq++ {
		msg := []byte(fmt.Sprintf("msg-%d %s", seq, pad))
		b.Records = append(b.Records, queue.Record{Endpoint: "test", Time: time.Now().UnixNano(), Frames: [][]byte{msg}})
		if len(b.Records) == 256 {
			h.q.Send(b)
			b = h.q.Get()
		}
	}
	if len(b.Records) > 0 {
		h.q.Send(b)
	}
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	if h.done == nil {
		return
	}
	close(h.q.C)
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writer did not stop")
	}
	h.done = nil
}

var lineRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z msg-(\d+) `)

// readSeqs reads every file of the log and returns how often each sequence
// number occurs; it fails on a line that is not whole.
func readSeqs(t *testing.T, path string) (map[int]int, []string) {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	err = ReadLines(path, func(file string, line []byte) {
		m := lineRE.FindSubmatch(line)
		if m == nil {
			t.Fatalf("%s: malformed line %q", file, line)
		}
		n, _ := strconv.Atoi(string(m[1]))
		seen[n]++
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen, files
}

func expectEach(t *testing.T, seen map[int]int, n int) {
	t.Helper()
	for i := range n {
		if seen[i] != 1 {
			t.Fatalf("message %d found %d times", i, seen[i])
		}
	}
	if len(seen) != n {
		t.Fatalf("found %d distinct messages, want %d", len(seen), n)
	}
}

func TestRotateBySizeUnderLoadWithCompression(t *testing.T) {
	for _, codec := range []Codec{Gzip, Zstd} {
		t.Run(string(codec), func(t *testing.T) {
			const n = 200_000
			h := start(t, Options{MaxSizeMB: 1, Compress: codec, BufferBytes: 64 << 10})
			pad := strings.Repeat("x", 60)
			h.feed(0, n, pad)
			h.stop(t)

			seen, files := readSeqs(t, h.path)
			expectEach(t, seen, n)
			compressed := 0
			for _, f := range files {
				if strings.HasSuffix(f, codec.suffix()) {
					compressed++
				}
				if info, err := os.Stat(f); err == nil && !strings.HasSuffix(f, codec.suffix()) && info.Size() > 1<<20 {
					t.Errorf("%s is %d bytes, over the 1 MiB limit", f, info.Size())
				}
			}
			rot := testutil.ToFloat64(h.m.Rotations.WithLabelValues("size"))
			if rot < 10 || compressed != int(rot) {
				t.Errorf("size rotations %v, compressed backups %d (files %v)", rot, compressed, files)
			}
			if got := testutil.ToFloat64(h.m.Lines); got != n {
				t.Errorf("lines written metric %v, want %d", got, n)
			}
		})
	}
}

// TestRetentionCountsEveryCodec: AGG_MAX_BACKUPS keeps the newest backups,
// compressed with either codec or not at all, and counts what it removes.
func TestRetentionCountsEveryCodec(t *testing.T) {
	for _, codec := range []Codec{Gzip, Zstd, None} {
		t.Run(string(codec)+"-", func(t *testing.T) {
			h := start(t, Options{MaxSizeMB: 1, MaxBackups: 3, Compress: codec, BufferBytes: 64 << 10})
			h.feed(0, 150_000, strings.Repeat("r", 60))
			h.stop(t)
			files, err := Files(h.path)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 4 { // three backups and the live file
				t.Fatalf("files %v, want 3 backups and the live file", files)
			}
			rot := testutil.ToFloat64(h.m.Rotations.WithLabelValues("size"))
			if removed := testutil.ToFloat64(h.m.Pruned); removed != rot-3 {
				t.Errorf("removed %v backups of %v, want %v", removed, rot, rot-3)
			}
		})
	}
}

func TestRotateByTime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for two wall-clock seconds")
	}
	h := start(t, Options{RotateEvery: time.Second, FlushInterval: 20 * time.Millisecond})
	deadline := time.Now().Add(2500 * time.Millisecond)
	seq := 0
	for time.Now().Before(deadline) {
		h.feed(seq, seq+50, "t")
		seq += 50
		time.Sleep(10 * time.Millisecond)
	}
	h.stop(t)
	seen, files := readSeqs(t, h.path)
	expectEach(t, seen, seq)
	if rot := testutil.ToFloat64(h.m.Rotations.WithLabelValues("time")); rot < 2 || len(files) < 3 {
		t.Errorf("time rotations %v, files %v; want at least 2 and 3", rot, files)
	}
}

func TestReopenAfterExternalRotation(t *testing.T) {
	h := start(t, Options{})
	h.feed(0, 1000, "a")
	waitLines(t, h.path, 1000)
	moved := h.path + ".1"
	if err := os.Rename(h.path, moved); err != nil { // what logrotate does
		t.Fatal(err)
	}
	h.feed(1000, 1500, "b") // still goes to the moved file: it is open
	waitLines(t, moved, 1500)
	h.reopen <- struct{}{}
	waitFor(t, func() bool { return testutil.ToFloat64(h.m.Reopens) == 1 })
	h.feed(1500, 2000, "c")
	h.stop(t)

	seen := map[int]int{}
	for _, f := range []string{moved, h.path} {
		s, _ := readSeqs(t, f)
		for k, v := range s {
			seen[k] += v
		}
	}
	expectEach(t, seen, 2000)
	if s, _ := readSeqs(t, h.path); len(s) != 500 {
		t.Errorf("new file holds %d messages, want 500", len(s))
	}
}

func TestIdleWriterFlushesWithoutWaitingForTheInterval(t *testing.T) {
	h := start(t, Options{FlushInterval: time.Hour})
	h.feed(0, 1, "idle")
	// The loop's tick comes after a second at the earliest (the interval is
	// an hour); a line seen well before that was written because nothing
	// more was waiting.
	eventually.Within(t, 500*time.Millisecond, "an idle writer writes its line", func() bool {
		data, _ := os.ReadFile(h.path)
		return strings.Count(string(data), "\n") == 1
	})
}

func TestFullDiskIsCountedNotFatal(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	path := filepath.Join(t.TempDir(), "subscriber.log")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{Path: path})
	h.feed(0, 300, "full")
	waitFor(t, func() bool { return testutil.ToFloat64(h.dropped.WithLabelValues(DropWriteError)) == 300 })
	if h.w.Ready() == nil {
		t.Error("writer reports ready on a full disk")
	}
	if testutil.ToFloat64(h.m.WriteErrors) < 1 || testutil.ToFloat64(h.m.Lines) != 0 {
		t.Errorf("write errors %v, lines %v", testutil.ToFloat64(h.m.WriteErrors), testutil.ToFloat64(h.m.Lines))
	}
}

func TestLineTooLongForAFileIsDropped(t *testing.T) {
	h := start(t, Options{MaxSizeMB: 1})
	b := h.q.Get()
	big := make([]byte, 600<<10)
	for i := range big {
		big[i] = '\n' // escapes to two bytes each: 1.2 MB, over the 1 MiB file size
	}
	b.Records = append(b.Records, queue.Record{Frames: [][]byte{big}}, queue.Record{Frames: [][]byte{big}})
	h.q.Send(b)
	h.feed(0, 10, "after")
	h.stop(t)
	seen, _ := readSeqs(t, h.path)
	if len(seen) != 10 {
		t.Fatalf("found %d small messages, want 10", len(seen))
	}
	if got := testutil.ToFloat64(h.dropped.WithLabelValues(DropLineTooLong)); got != 2 {
		t.Fatalf("line_too_long drops %v, want 2", got)
	}
}

func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	waitFor(t, func() bool {
		data, _ := os.ReadFile(path)
		return strings.Count(string(data), "\n") >= n
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	eventually.Within(t, 10*time.Second, "the lines in the file", cond)
}

func TestShortSyncIntervalIsKept(t *testing.T) {
	// A sync interval shorter than the flush interval is what a user asks
	// for a smaller power-cut window: the line is synced within it, not at
	// the next flush tick (a second at the earliest here).
	h := start(t, Options{FlushInterval: time.Hour, SyncInterval: 20 * time.Millisecond})
	h.feed(0, 1, "synced")
	eventually.Within(t, 500*time.Millisecond, "a sync with a 20 ms sync interval", func() bool { return syncs(t, h.m) > 0 })
}

// syncs is how many times the writer has synced its file.
func syncs(t *testing.T, m *Metrics) uint64 {
	t.Helper()
	var d dto.Metric
	if err := m.SyncSeconds.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

// startRouted runs a writer of a file per source with the template name
// (a file name with placeholders) in a fresh directory, which it returns.
func startRouted(t *testing.T, name string, opt Options) (*harness, string) {
	t.Helper()
	dir := t.TempDir()
	tpl, err := route.Parse(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	opt.Path, opt.Route = tpl.Path(), tpl
	return start(t, opt), dir
}

// topicRecord is a two-frame message with this topic, received now.
func topicRecord(endpoint string, topic, body []byte) queue.Record {
	return queue.Record{Endpoint: endpoint, Time: time.Now().UnixNano(), Frames: [][]byte{topic, body}}
}

func TestIdleFilePerSourceFlushesWithoutWaitingForTheInterval(t *testing.T) {
	h, dir := startRouted(t, "{topic}.log", Options{FlushInterval: time.Hour, MaxOpenFiles: 4, MaxFiles: 10})
	b := h.q.Get()
	for _, topic := range []string{"a", "b"} {
		b.Records = append(b.Records, topicRecord("test", []byte(topic), []byte("idle")))
	}
	h.q.Send(b)
	// Lines of a file per source wait for the input to pause (a
	// millisecond), not for the tick, which comes after a second at the
	// earliest here.
	eventually.Within(t, 500*time.Millisecond, "an idle writer writes the lines of a file per source", func() bool {
		a, _ := os.ReadFile(filepath.Join(dir, "a.log"))
		bb, _ := os.ReadFile(filepath.Join(dir, "b.log"))
		return strings.Count(string(a), "\n") == 1 && strings.Count(string(bb), "\n") == 1
	})
}

func TestBusyFileAmongManyIsWrittenAtOnce(t *testing.T) {
	// With lines waiting for more files than a pause writes at once, a
	// file that has gathered a chunk is written without waiting for the
	// others or for the flush tick (a second here), and the others follow
	// at the tick: nothing waits for the hour FlushInterval says.
	h, dir := startRouted(t, "{topic}.log", Options{FlushInterval: time.Hour, MaxOpenFiles: 1000, MaxFiles: 1000})
	b := h.q.Get()
	for i := range routedQuietFiles * 2 {
		b.Records = append(b.Records, topicRecord("test", fmt.Appendf(nil, "quiet%d", i), []byte("one line")))
	}
	h.q.Send(b)
	pad := strings.Repeat("x", 1000)
	lines := routedChunk/len(pad) + 10
	for i := 0; i < lines; i += 10 {
		b := h.q.Get()
		for j := i; j < min(i+10, lines); j++ {
			b.Records = append(b.Records, topicRecord("test", []byte("busy"), fmt.Appendf(nil, "%d %s", j, pad)))
		}
		h.q.Send(b)
	}
	busy := filepath.Join(dir, "busy.log")
	eventually.Within(t, 500*time.Millisecond, "a chunk of the busy file written before the tick", func() bool {
		data, _ := os.ReadFile(busy)
		return len(data) >= routedChunk
	})
	eventually.Within(t, 3*time.Second, "every file written at the tick", func() bool {
		for i := range routedQuietFiles * 2 {
			data, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("quiet%d.log", i)))
			if strings.Count(string(data), "\n") != 1 {
				return false
			}
		}
		data, _ := os.ReadFile(busy)
		return strings.Count(string(data), "\n") == lines
	})
}

func TestBuffersOfManyFilesStayBounded(t *testing.T) {
	// A burst to each of a thousand files, each short of a chunk: the
	// buffers kept once written are bounded in all, not a burst per file
	// (64 MiB here).
	h, _ := startRouted(t, "{topic}.log", Options{FlushInterval: 50 * time.Millisecond, MaxOpenFiles: 64, MaxFiles: 2000})
	const files, perFile = 1000, 40
	body := []byte(strings.Repeat("x", 1000)) // one array for every record: only the writer's memory counts
	topics := make([][]byte, files)
	for i := range topics {
		topics[i] = []byte(fmt.Sprintf("t%04d", i))
	}
	for i := range topics {
		for j := 0; j < perFile; j += 10 {
			b := h.q.Get()
			for range 10 {
				b.Records = append(b.Records, topicRecord("test", topics[i], body))
			}
			h.q.Send(b)
		}
	}
	eventually.Within(t, 30*time.Second, "every line written", func() bool {
		return testutil.ToFloat64(h.m.Lines) == files*perFile
	})
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if limit := uint64(routedKeepTotal + 16<<20); ms.HeapInuse > limit {
		t.Fatalf("%d MiB of heap in use once %d files of %d KiB were written, want at most %d MiB",
			ms.HeapInuse>>20, files, perFile, limit>>20)
	}
	t.Logf("%d MiB of heap in use", ms.HeapInuse>>20)
}

func TestValuesThatMeetInOneNameShareTheFile(t *testing.T) {
	// "a"+"bc" and "ab"+"c" are both abc.log under {topic}{endpoint}: one
	// file, written by one logFile, its lines in order.
	h, dir := startRouted(t, "{topic}{endpoint}.log", Options{MaxOpenFiles: 4, MaxFiles: 10})
	b := h.q.Get()
	for i, v := range [][2]string{{"a", "bc"}, {"ab", "c"}, {"a", "bc"}, {"ab", "c"}} {
		b.Records = append(b.Records, topicRecord(v[1], []byte(v[0]), fmt.Append(nil, "line ", i)))
	}
	h.q.Send(b)
	h.stop(t)
	data, err := os.ReadFile(filepath.Join(dir, "abc.log"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for line := range strings.Lines(string(data)) {
		got = append(got, line[strings.LastIndexByte(line, '\t')+1:len(line)-1])
	}
	if want := []string{"line 0", "line 1", "line 2", "line 3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("abc.log holds %q, want %q", got, want)
	}
	if n := testutil.ToFloat64(h.m.FilesKnown); n != 1 {
		t.Fatalf("%v files known, want 1", n)
	}
}
