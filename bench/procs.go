package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"aggregator/internal/zmqtest"
)

// binaries are built fresh by the benchmark, like the tests do.
type binaries struct {
	aggregator, downcase, refsub string
}

func build(dir string) (binaries, error) {
	b := binaries{
		aggregator: filepath.Join(dir, "aggregator"),
		downcase:   filepath.Join(dir, "downcase"),
		refsub:     filepath.Join(dir, "refsub"),
	}
	for out, pkg := range map[string]string{b.aggregator: "./cmd/aggregator", b.downcase: "./cmd/downcase", b.refsub: "./bench/refsub"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = repoRoot()
		if msg, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("build %s: %v\n%s", pkg, err, msg)
		}
	}
	return b, nil
}

// repoRoot finds the module root from the working directory.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

func freeAddr() (string, error) { return zmqtest.FreeAddr() }

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// cpuSeconds is the user+system CPU time a running process has used.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" that ends the command name; utime and stime
	// are fields 14 and 15 of the whole line.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks, nil
}

// peakRSS is a running process's VmHWM in bytes.
func peakRSS(pid int) (int64, error) {
	kb, err := procStatus(pid, "VmHWM")
	return kb << 10, err
}

// threads is the number of OS threads of a running process.
func threads(pid int) (int, error) {
	n, err := procStatus(pid, "Threads")
	return int(n), err
}

// procStatus reads a number from /proc/<pid>/status ("VmHWM", "Threads").
func procStatus(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s for %d", key, pid)
}

// daemon is a running aggregator.
type daemon struct {
	cmd  *exec.Cmd
	http string
	log  string
	done chan error
	errs strings.Builder
}

func startDaemon(bin string, env map[string]string) (*daemon, error) {
	dir, err := os.MkdirTemp("", "bench-aggregator")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d := &daemon{http: addr, log: filepath.Join(dir, "subscriber.log"), done: make(chan error, 1)}
	d.cmd = exec.Command(bin)
	d.cmd.Env = append(os.Environ(), "AGG_LOG_FILE="+d.log, "AGG_HTTP_ADDR="+addr, "AGG_LOG_LEVEL=warn")
	for k, v := range env {
		d.cmd.Env = append(d.cmd.Env, k+"="+v)
	}
	d.cmd.Stderr = &d.errs
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			d.kill()
			return nil, fmt.Errorf("aggregator not ready: %s", d.errs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric reads one series from /metrics.
func (d *daemon) metric(series string) float64 {
	return scrape(d.http, series)
}

func scrape(addr, series string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return 0
}

// stop sends SIGTERM, waits, and removes the log directory unless keep.
func (d *daemon) stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			return fmt.Errorf("aggregator: %v: %s", err, d.errs.String())
		}
		return nil
	case <-time.After(30 * time.Second):
		d.kill()
		return fmt.Errorf("aggregator did not stop")
	}
}

func (d *daemon) kill() {
	d.cmd.Process.Kill()
}

func (d *daemon) cleanup() { os.RemoveAll(filepath.Dir(d.log)) }
