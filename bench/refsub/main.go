// Command refsub is the benchmark's reference subscriber: a bare SUB
// socket that appends each message plus a newline to a file through a
// 64 KiB buffer, and nothing else. It is the practical ceiling for a
// subscriber written with the same libraries on the same machine;
// aggregator is reported as a ratio of it.
//
//	refsub -out FILE -n COUNT ENDPOINT...
//
// It exits once it has written COUNT messages (flushing first), or, with
// -out "", only counts them (the downcase benchmark's subscriber). It
// prints "ready" on stdout once connected.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	zmq "github.com/pebbe/zmq4"
)

func main() {
	out := flag.String("out", "", "file to append to; empty: count only")
	n := flag.Int("n", 0, "messages to receive before exiting (0: until killed)")
	flag.Parse()
	if err := run(*out, *n, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "refsub:", err)
		os.Exit(1)
	}
}

func run(out string, n int, endpoints []string) error {
	sock, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(0)
	sock.SetRcvhwm(0)
	sock.SetSubscribe("")
	for _, ep := range endpoints {
		if err := sock.Connect(ep); err != nil {
			return fmt.Errorf("connect %s: %w", ep, err)
		}
	}
	w := io.Discard
	if out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Println("ready")
	for i := 0; n == 0 || i < n; i++ {
		msg, err := sock.RecvBytes(0)
		if err != nil {
			return err
		}
		bw.Write(msg)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
