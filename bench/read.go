package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"time"

	"aggregator/internal/sink"
)

// runRead measures `aggregator read --grep` over the daemon's own zstd
// backups against the pipeline a user would write instead, `zstdcat -f
// FILES | grep -F`, in one run: the daemon writes n messages through
// rotations of fileMB with zstd, then each command searches them for a
// string one line holds, three times each, alternated; the medians are
// compared.
func runRead(bins binaries, n, size, fileMB int, out io.Writer) error {
	pubs, d, stop, err := zstdDaemon(bins, "AGG_MAX_SIZE_MB", strconv.Itoa(fileMB))
	if err != nil {
		return err
	}
	defer stop()
	if err := pubs.sendAll(n, size); err != nil {
		return err
	}
	files, err := d.stopWithBackups(n, "size")
	if err != nil {
		return err
	}
	var stored, plain int64
	for _, f := range files {
		if info, err := os.Stat(f); err == nil {
			stored += info.Size()
		}
	}
	plain = int64(n) * int64(size+29) // each line: its time, a space, the message, a newline

	needle := fmt.Sprintf(" %010d ", n/2) // one line holds it
	read := exec.Command(bins.aggregator, "read", "--grep", needle, d.log)
	shell := exec.Command("sh", append([]string{"-c", `zstdcat -f "$@" | grep -F -- "$0"`, needle}, files...)...)
	var readT, shellT []time.Duration
	var readOut, shellOut []byte
	for range 3 {
		for _, c := range []struct {
			cmd *exec.Cmd
			t   *[]time.Duration
			out *[]byte
		}{{read, &readT, &readOut}, {shell, &shellT, &shellOut}} {
			cmd := exec.Command(c.cmd.Path, c.cmd.Args[1:]...)
			start := time.Now()
			o, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%v: %w", cmd.Args[:3], err)
			}
			*c.t = append(*c.t, time.Since(start))
			*c.out = o
		}
	}
	if !bytes.Equal(readOut, shellOut) || bytes.Count(readOut, []byte{'\n'}) != 1 {
		return fmt.Errorf("read --grep found %q, zstdcat | grep -F %q", readOut, shellOut)
	}
	r, s := medianDuration(readT), medianDuration(shellT)
	fmt.Fprintf(out, "\nread --grep over %d files (%.0f MB of zstd, about %.0f MB of lines), one line found: aggregator read %s, zstdcat -f | grep -F %s: %.2fx (the pipeline's time over read's; median of 3)\n",
		len(files), float64(stored)/1e6, float64(plain)/1e6, r.Round(time.Millisecond), s.Round(time.Millisecond), s.Seconds()/r.Seconds())
	return nil
}

// stopWithBackups waits until the daemon has written n lines and
// compressed its backups, stops it, and lists the log's files.
func (d *daemon) stopWithBackups(n int, reason string) ([]string, error) {
	if err := d.waitWrittenAndCompressed(n, reason, 5*time.Minute); err != nil {
		return nil, err
	}
	if err := d.stop(); err != nil {
		return nil, err
	}
	return sink.Files(d.log)
}

func medianDuration(ds []time.Duration) time.Duration {
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted[len(sorted)/2]
}

// runWindow measures a time window: the daemon rotates every second
// (AGG_ROTATE_EVERY=1s) with zstd while one publisher sends at rate for
// the given number of seconds, a day of hourly backups in small; then
// `aggregator read --since --until` takes one second's lines against
// `zstdcat -f FILES | awk` over them all, three times each, alternated.
func runWindow(bins binaries, rate, seconds, size int, out io.Writer) error {
	pubs, d, stop, err := zstdDaemon(bins, "AGG_ROTATE_EVERY", "1s")
	if err != nil {
		return err
	}
	defer stop()
	start := time.Now()
	n, err := pubs.sendPaced(rate, time.Duration(seconds)*time.Second, size)
	if err != nil {
		return err
	}
	files, err := d.stopWithBackups(n, "time")
	if err != nil {
		return err
	}
	since := start.Add(time.Duration(seconds/2) * time.Second).Truncate(time.Second).UTC()
	until := since.Add(time.Second)
	const stamp = "2006-01-02T15:04:05.000000Z07:00" // as the lines store it, so that awk compares strings
	read := []string{bins.aggregator, "read", "--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano), d.log}
	awk := append([]string{"sh", "-c", `a="$1"; b="$2"; shift 2; zstdcat -f "$@" | awk -v a="$a" -v b="$b" '$1 >= a && $1 < b'`, "sh", since.Format(stamp), until.Format(stamp)}, files...)
	var readT, awkT []time.Duration
	var readOut, awkOut []byte
	for range 3 {
		for _, c := range []struct {
			args []string
			t    *[]time.Duration
			out  *[]byte
		}{{read, &readT, &readOut}, {awk, &awkT, &awkOut}} {
			cmd := exec.Command(c.args[0], c.args[1:]...)
			t0 := time.Now()
			o, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%v: %w", c.args[:3], err)
			}
			*c.t = append(*c.t, time.Since(t0))
			*c.out = o
		}
	}
	lines := bytes.Count(readOut, []byte{'\n'})
	if !bytes.Equal(readOut, awkOut) || lines == 0 {
		return fmt.Errorf("read took %d lines of the window, zstdcat | awk %d", lines, bytes.Count(awkOut, []byte{'\n'}))
	}
	r, a := medianDuration(readT), medianDuration(awkT)
	fmt.Fprintf(out, "one second's window in %d one-second backups (%d lines, %d in the window): aggregator read --since --until %s, zstdcat -f | awk %s: %.1fx (median of 3)\n",
		len(files), n, lines, r.Round(time.Millisecond), a.Round(time.Millisecond), a.Seconds()/r.Seconds())
	return nil
}

// zstdDaemon starts a daemon that keeps every backup, compressed with zstd,
// rotating as key=value says, fed by one publisher it connects to and that
// it has subscribed to. stop kills it, removes its files and closes the
// publisher.
func zstdDaemon(bins binaries, key, value string) (publishers, *daemon, func(), error) {
	pubs, err := newPublishers(1)
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := startDaemon(bins.aggregator, map[string]string{
		"AGG_CONNECT":     pubs.endpoints()[0],
		key:               value,
		"AGG_MAX_BACKUPS": "0",
		"AGG_COMPRESS":    "zstd",
	})
	if err != nil {
		pubs.close()
		return nil, nil, nil, err
	}
	stop := func() {
		d.kill()
		d.cleanup()
		pubs.close()
	}
	if err := pubs.waitSubscribed(); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return pubs, d, stop, nil
}
