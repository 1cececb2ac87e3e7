package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"aggregator/internal/eventually"
	"aggregator/internal/zmqtest"
)

// TestWithAggregator is the README demo as a test: both real binaries,
// real HTTP requests, and every answer found as a line in subscriber.log.
func TestWithAggregator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both binaries")
	}
	bin := buildBoth(t)
	pubEP := freeTCP(t)
	demo(t, bin, []string{"DOWNCASE_PUB_BIND=tcp://" + pubEP}, []string{"AGG_CONNECT=tcp://" + pubEP})
}

// TestWithAggregatorOverCurve: downcase connects to the aggregator's bind
// endpoint with CurveZMQ, each with its own key pair.
func TestWithAggregatorOverCurve(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both binaries")
	}
	bin := buildBoth(t)
	keys := t.TempDir()
	for _, name := range []string{"aggregator", "downcase"} {
		if out, err := exec.Command(filepath.Join(bin, name), "-curve-keygen", filepath.Join(keys, name)).CombinedOutput(); err != nil {
			t.Fatalf("%s -curve-keygen: %v %s", name, err, out)
		}
	}
	aggEP := freeTCP(t)
	demo(t, bin,
		[]string{"DOWNCASE_PUB_BIND=", "DOWNCASE_PUB_CONNECT=tcp://" + aggEP,
			"DOWNCASE_CURVE_SECRET_KEY_FILE=" + filepath.Join(keys, "downcase_secret"),
			"DOWNCASE_CURVE_SERVER_PUBLIC_KEY_FILE=" + filepath.Join(keys, "aggregator")},
		[]string{"AGG_CONNECT=", "AGG_BIND=tcp://" + aggEP,
			"AGG_CURVE_SECRET_KEY_FILE=" + filepath.Join(keys, "aggregator_secret")})
}

func buildBoth(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for _, name := range []string{"downcase", "aggregator"} {
		args := []string{"build", "-o", filepath.Join(bin, name)}
		if raceBuild { // the programs run under the race detector as the suite does
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "../"+name)...).CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return bin
}

// demo starts both binaries with their extra environment, sends requests
// from several clients and finds every answer once in subscriber.log.
func demo(t *testing.T, bin string, dcEnv, aggEnv []string) {
	t.Helper()
	work := t.TempDir()
	dcAddr := freeTCP(t)
	aggHTTP := freeTCP(t)

	agg := start(t, bin, work, "aggregator", append(aggEnv, "AGG_HTTP_ADDR="+aggHTTP)...)
	start(t, bin, work, "downcase", append(dcEnv, "DOWNCASE_HTTP_ADDR="+dcAddr)...)
	logFile := filepath.Join(work, "subscriber.log") // the default name, in the working directory

	// PUB/SUB's slow joiner: what is published before the subscription
	// arrives is lost, so probe until a line shows up.
	deadline := time.Now().Add(15 * time.Second)
	for !fileHas(logFile, "lower case of PROBE is probe") {
		if time.Now().After(deadline) {
			t.Fatal("no probe line reached subscriber.log")
		}
		http.Get("http://" + dcAddr + "/downcase/?param=PROBE")
		time.Sleep(20 * time.Millisecond)
	}

	const clients, each = 8, 250
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				resp, err := http.Get(fmt.Sprintf("http://%s/downcase/?param=%s", dcAddr, url.QueryEscape(fmt.Sprintf("Client%d-Req%d", c, i))))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Messages published in the last instant may still be on the wire;
	// once the aggregator has received all that downcase published, a
	// clean stop must write every one of them.
	eventually.Within(t, 10*time.Second, "the aggregator receives everything published", func() bool {
		pub := metricSum("http://"+dcAddr+"/metrics", "downcase_messages_published_total")
		return pub > 0 && metricSum("http://"+aggHTTP+"/metrics", "aggregator_messages_received_total") == pub
	})
	agg.Process.Signal(syscall.SIGTERM)
	agg.Wait()

	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		_, msg, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("malformed line %q", line)
		}
		counts[msg]++
	}
	for c := range clients {
		for i := range each {
			in := fmt.Sprintf("Client%d-Req%d", c, i)
			want := "lower case of " + in + " is " + strings.ToLower(in)
			if counts[want] != 1 {
				t.Fatalf("%q found %d times in subscriber.log", want, counts[want])
			}
		}
	}
}

// start runs the program name from bin in work with env added, stops it
// with SIGTERM when the test ends, and shows its log when the test failed.
func start(t *testing.T, bin, work, name string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), env...)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if strings.Contains(logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a race in %s", name)
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, logs.String())
		}
	})
	return cmd
}

func freeTCP(t *testing.T) string {
	t.Helper()
	addr, err := zmqtest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// metricSum adds up every series of a metric family at url; -1 when the
// page cannot be read.
func metricSum(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				sum += v
			}
		}
	}
	return sum
}

func fileHas(path, s string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(data), s)
}

// TestFirstRequestReachesTheLog: the demo's first request, made as soon as
// downcase says it is ready, reaches subscriber.log within 3 s, whichever
// of the two programs was started first.
func TestFirstRequestReachesTheLog(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both binaries")
	}
	bin := buildBoth(t)
	for _, aggregatorFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("aggregator first %v", aggregatorFirst), func(t *testing.T) {
			work := t.TempDir()
			pubEP, dcAddr, aggHTTP := freeTCP(t), freeTCP(t), freeTCP(t)
			ready := func(addr string) {
				eventually.Within(t, 10*time.Second, addr+" ready", func() bool {
					resp, err := http.Get("http://" + addr + "/-/ready")
					if err != nil {
						return false
					}
					resp.Body.Close()
					return resp.StatusCode == 200
				})
			}
			aggregator := func() {
				start(t, bin, work, "aggregator", "AGG_CONNECT=tcp://"+pubEP, "AGG_HTTP_ADDR="+aggHTTP)
				ready(aggHTTP)
			}
			if aggregatorFirst {
				aggregator()
				time.Sleep(3 * time.Second) // the reconnect back-off grows to its cap
			}
			start(t, bin, work, "downcase", "DOWNCASE_PUB_BIND=tcp://"+pubEP, "DOWNCASE_HTTP_ADDR="+dcAddr)
			ready(dcAddr)
			resp, err := http.Get("http://" + dcAddr + "/downcase/?param=FiRST")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			asked := time.Now()
			if !aggregatorFirst {
				aggregator()
			}
			eventually.Within(t, 3*time.Second, "the first request reaches subscriber.log", func() bool {
				return fileHas(filepath.Join(work, "subscriber.log"), "lower case of FiRST is first")
			})
			t.Logf("in the log %s after the request", time.Since(asked).Round(time.Millisecond))
		})
	}
}
