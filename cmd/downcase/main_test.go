package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"aggregator/internal/curve"
	"aggregator/internal/eventually"
	"aggregator/internal/sdnotify"
	"aggregator/internal/zmqtest"
)

func testConfig(t *testing.T) Config {
	t.Helper()
	ep, err := zmqtest.FreeTCPEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		HTTPAddr:      "127.0.0.1:0",
		PubBind:       []string{ep},
		MaxParamBytes: 64,
		QueueLength:   100,
		HoldMessages:  1000,
		HoldFor:       time.Minute,
		SndHWM:        0,
		Linger:        time.Second,
		LogLevel:      "debug",
		LogFormat:     "text",
	}
}

// startService runs the real service in-process and a real SUB socket on
// its PUB endpoint.
func startService(t *testing.T, cfg Config) (base string, sub *zmq.Socket) {
	t.Helper()
	s, err := newService(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, sdnotify.New(func(string) string { return "" })) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	sub, err = zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	sub.SetLinger(0)
	sub.SetSubscribe("")
	sub.SetRcvtimeo(5 * time.Second)
	if err := sub.Connect(cfg.PubBind[0]); err != nil {
		t.Fatal(err)
	}
	base = "http://" + s.Addr()
	// The slow joiner: publish probes until one arrives, so that the test
	// messages that follow cannot be lost to a subscription still on its way.
	deadline := time.Now().Add(5 * time.Second)
	sub.SetRcvtimeo(20 * time.Millisecond)
	for {
		get(t, base+"/downcase/?param=PROBE", nil)
		if _, err := sub.Recv(0); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("subscriber never joined")
		}
	}
	for { // drain further probes
		if _, err := sub.Recv(0); err != nil {
			break
		}
	}
	sub.SetRcvtimeo(5 * time.Second)
	return base, sub
}

type answer struct {
	code    int
	ctype   string
	allow   string
	body    string
	headers http.Header
}

func do(t *testing.T, method, u string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Allow"), string(b), resp.Header}
}

func get(t *testing.T, u string, hdr map[string]string) answer { return do(t, "GET", u, hdr) }

func TestAPI(t *testing.T) {
	base, sub := startService(t, testConfig(t))
	long := strings.Repeat("a", 65)
	tests := []struct {
		name      string
		method    string
		path      string
		hdr       map[string]string
		code      int
		ctype     string
		body      string // exact, or a substring for errors
		published string // "" means nothing is published
	}{
		{"plain", "GET", "/downcase/?param=HeLLo", nil, 200, "text/plain; charset=utf-8", "lower case of HeLLo is hello", "lower case of HeLLo is hello"},
		{"no slash", "GET", "/downcase?param=ABC", nil, 200, "text/plain; charset=utf-8", "lower case of ABC is abc", "lower case of ABC is abc"},
		{"unicode", "GET", "/downcase/?param=" + url.QueryEscape("ÀÉÎ ΣΑ Ǆ"), nil, 200, "text/plain; charset=utf-8", "lower case of ÀÉÎ ΣΑ Ǆ is àéî σα ǆ", "lower case of ÀÉÎ ΣΑ Ǆ is àéî σα ǆ"},
		{"json by accept", "GET", "/downcase/?param=HeLLo", map[string]string{"Accept": "application/json"}, 200, "application/json", `{"input":"HeLLo","lower":"hello"}` + "\n", "lower case of HeLLo is hello"},
		{"json by path", "GET", "/v1/downcase?param=XY", nil, 200, "application/json", `{"input":"XY","lower":"xy"}` + "\n", "lower case of XY is xy"},
		{"missing param", "GET", "/downcase/", nil, 400, "text/plain; charset=utf-8", `missing query parameter "param"`, ""},
		{"empty param", "GET", "/downcase/?param=", nil, 400, "text/plain; charset=utf-8", `missing query parameter "param"`, ""},
		{"json error", "GET", "/v1/downcase", nil, 400, "application/json", `{"error":"missing query parameter`, ""},
		{"too long", "GET", "/downcase/?param=" + long, nil, 414, "text/plain; charset=utf-8", "limit is 64", ""},
		{"bad percent", "GET", "/downcase/?param=%zz", nil, 400, "text/plain; charset=utf-8", "bad query string", ""},
		{"bad utf8", "GET", "/downcase/?param=%ff%fe", nil, 400, "text/plain; charset=utf-8", "not valid UTF-8", ""},
		{"post", "POST", "/downcase/?param=x", nil, 405, "text/plain; charset=utf-8", "method not allowed", ""},
		{"unknown path", "GET", "/upcase/?param=x", nil, 404, "text/plain; charset=utf-8", "not found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.method, base+tt.path, tt.hdr)
			if a.code != tt.code || a.ctype != tt.ctype {
				t.Fatalf("got %d %q, want %d %q (body %q)", a.code, a.ctype, tt.code, tt.ctype, a.body)
			}
			if tt.code == 200 && a.body != tt.body || tt.code != 200 && !strings.Contains(a.body, tt.body) {
				t.Fatalf("body %q, want %q", a.body, tt.body)
			}
			if tt.code == 405 && a.allow != "GET, HEAD" {
				t.Fatalf("Allow %q", a.allow)
			}
			if tt.published != "" {
				msg, err := sub.Recv(0)
				if err != nil || msg != tt.published {
					t.Fatalf("published %q, %v; want %q", msg, err, tt.published)
				}
			}
		})
	}
	// Nothing was published for the failed requests: the next message is
	// the next good one.
	get(t, base+"/downcase/?param=LAST", nil)
	if msg, err := sub.Recv(0); err != nil || msg != "lower case of LAST is last" {
		t.Fatalf("after errors, published %q, %v", msg, err)
	}
}

func TestHEAD(t *testing.T) {
	base, sub := startService(t, testConfig(t))
	a := do(t, "HEAD", base+"/downcase/?param=Hi", nil)
	if a.code != 200 || a.body != "" || a.headers.Get("Content-Length") != "22" {
		t.Fatalf("HEAD: %d %q length %q", a.code, a.body, a.headers.Get("Content-Length"))
	}
	if msg, err := sub.Recv(0); err != nil || msg != "lower case of Hi is hi" {
		t.Fatalf("published %q, %v", msg, err)
	}
}

func TestTopicFrame(t *testing.T) {
	cfg := testConfig(t)
	cfg.Topic = "downcase"
	base, sub := startService(t, cfg)
	get(t, base+"/downcase/?param=T", nil)
	parts, err := sub.RecvMessage(0)
	if err != nil || len(parts) != 2 || parts[0] != "downcase" || parts[1] != "lower case of T is t" {
		t.Fatalf("got %q, %v", parts, err)
	}
}

func TestFullQueueDropsAndStillAnswers(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueLength = 1
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := newPubMetrics(reg, func() float64 { return 0 }, func() float64 { return 0 })
	pub, err := newPublisher(zctx, cfg, curve.Keys{}, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { pub.close(); zctx.Term() }()
	// run is not started yet: the queue holds one message, then overflows.
	mux := http.NewServeMux()
	newAPI(64, pub, reg).register(mux)
	for i := range 3 {
		rec := newRecorder()
		mux.ServeHTTP(rec, mustRequest(t, "/downcase/?param=X"))
		if rec.code != 200 {
			t.Fatalf("request %d answered %d", i, rec.code)
		}
	}
	if got := testutil.ToFloat64(m.queueFull); got != 2 {
		t.Fatalf("queue_full drops %v, want 2", got)
	}
	go pub.run()
}

func TestMetricsEndpoint(t *testing.T) {
	base, _ := startService(t, testConfig(t))
	get(t, base+"/downcase/", nil)
	a := get(t, base+"/metrics", nil)
	for _, want := range []string{
		`downcase_http_requests_total{code="200"}`,
		`downcase_http_requests_total{code="400"} 1`,
		"downcase_messages_published_total",
		`downcase_messages_dropped_total{reason="queue_full"} 0`,
	} {
		if !strings.Contains(a.body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, p := range []string{"/-/healthy", "/-/ready"} {
		if a := get(t, base+p, nil); a.code != 200 {
			t.Errorf("%s: %d", p, a.code)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{HTTPAddr: "nope", PubBind: []string{"tcp://127.0.0.1"}, MaxParamBytes: 0, QueueLength: 0, SndHWM: -1, Linger: -1, LogLevel: "loud", LogFormat: "xml"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, v := range []string{"HTTP_ADDR", "PUB_BIND", "MAX_PARAM_BYTES", "QUEUE_LENGTH", "SNDHWM", "LINGER", "LOG_LEVEL", "LOG_FORMAT"} {
		if !strings.Contains(err.Error(), "DOWNCASE_"+v) {
			t.Errorf("error does not name DOWNCASE_%s: %v", v, err)
		}
	}
}

// TestHoldsUntilSubscribed: a request made before any subscriber joined
// is held and delivered when one subscribes; one held too long is dropped
// and counted, and only what a subscriber got counts as published.
func TestHoldsUntilSubscribed(t *testing.T) {
	cfg := testConfig(t)
	cfg.HoldFor = 300 * time.Millisecond
	s, err := newService(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, sdnotify.New(func(string) string { return "" })) }()
	defer func() { cancel(); <-done }()
	base := "http://" + s.Addr()
	metric := func(series string) string {
		for _, line := range strings.Split(get(t, base+"/metrics", nil).body, "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				return v
			}
		}
		return ""
	}

	get(t, base+"/downcase/?param=Expired", nil)
	time.Sleep(500 * time.Millisecond) // longer than HoldFor
	get(t, base+"/downcase/?param=Early", nil)
	if held := metric("downcase_held_messages"); held != "1" {
		t.Errorf("held %s, want 1", held)
	}
	if dropped := metric(`downcase_messages_dropped_total{reason="no_subscriber"}`); dropped != "1" {
		t.Errorf("no_subscriber drops %s, want 1", dropped)
	}

	sub, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetSubscribe("")
	sub.SetRcvtimeo(5 * time.Second)
	if err := sub.Connect(cfg.PubBind[0]); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.Recv(0)
	if err != nil || msg != "lower case of Early is early" {
		t.Fatalf("got %q, %v; want the held message", msg, err)
	}
	get(t, base+"/downcase/?param=Late", nil)
	if msg, err := sub.Recv(0); err != nil || msg != "lower case of Late is late" {
		t.Fatalf("got %q, %v", msg, err)
	}
	// The count follows the send that the subscriber may see first.
	eventually.Within(t, 5*time.Second, "published 2", func() bool { return metric("downcase_messages_published_total") == "2" })
}
