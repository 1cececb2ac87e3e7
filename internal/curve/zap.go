package curve

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// zapEndpoint is where libzmq looks for the authentication handler of a
// context (ZeroMQ RFC 27).
const zapEndpoint = "inproc://zeromq.zap.01"

// LoadAllowed reads a file of public keys, one per line (Z85, or
// `public-key = "..."`; # comments), such as the .public files of the
// peers allowed in, concatenated.
func LoadAllowed(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		name, key, ok, err := parseKeyLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if ok && name != "secret-key" {
			keys = append(keys, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no key in the file", path)
	}
	return keys, nil
}

// Authenticator is a ZAP handler: it lets CurveZMQ clients in only if
// their public key is allowed. One goroutine (Run) owns its socket.
type Authenticator struct {
	sock    *zmq.Socket
	allowed map[string]bool // binary 32-byte keys, as libzmq hands them over
	log     *slog.Logger
	logged  map[string]time.Time // when each refused key was last logged
}

// NewAuthenticator binds the ZAP endpoint of zctx. It must exist before
// any CurveZMQ server socket of zctx takes a connection.
func NewAuthenticator(zctx *zmq.Context, allowed []string, log *slog.Logger) (*Authenticator, error) {
	a := &Authenticator{allowed: map[string]bool{}, log: log, logged: map[string]time.Time{}}
	for _, k := range allowed {
		a.allowed[zmq.Z85decode(k)] = true
	}
	var err error
	if a.sock, err = zctx.NewSocket(zmq.REP); err != nil {
		return nil, err
	}
	if err := a.sock.SetLinger(0); err != nil {
		a.sock.Close()
		return nil, err
	}
	if err := a.sock.Bind(zapEndpoint); err != nil {
		a.sock.Close()
		return nil, fmt.Errorf("bind %s: %w", zapEndpoint, err)
	}
	return a, nil
}

// Close closes the socket of an authenticator whose Run never started.
func (a *Authenticator) Close() { a.sock.Close() }

// Run answers requests until ctx is done, then closes the socket.
func (a *Authenticator) Run(ctx context.Context) {
	defer a.sock.Close()
	poller := zmq.NewPoller()
	poller.Add(a.sock, zmq.POLLIN)
	for ctx.Err() == nil {
		polled, err := poller.Poll(100 * time.Millisecond)
		if err != nil || len(polled) == 0 {
			continue
		}
		req, err := a.sock.RecvMessageBytes(0)
		if err != nil {
			continue
		}
		a.sock.SendMessage(a.answer(req))
	}
}

// answer decides one request: version, request id, domain, address,
// routing id, mechanism, credentials.
func (a *Authenticator) answer(req [][]byte) []string {
	if len(req) < 6 {
		return []string{"1.0", "", "500", "malformed request", "", ""}
	}
	id, address, mechanism := string(req[1]), string(req[3]), string(req[5])
	if mechanism == "CURVE" && len(req) >= 7 && a.allowed[string(req[6])] {
		return []string{"1.0", id, "200", "OK", "", ""}
	}
	key := ""
	if len(req) >= 7 {
		key = zmq.Z85encode(string(req[6]))
	}
	if now := time.Now(); now.Sub(a.logged[key]) > time.Minute {
		if len(a.logged) > 1024 {
			clear(a.logged)
		}
		a.logged[key] = now
		a.log.Warn("CurveZMQ peer refused: key not allowed", "address", address, "mechanism", mechanism, "key", key)
	}
	return []string{"1.0", id, "400", "key not allowed", "", ""}
}

// parseKeyLine reads one line of a key file. It returns the key and its
// name ("public-key", "secret-key", or "" for a bare key); ok is false for
// lines that hold no key: blanks, comments, zcert section headers and
// metadata. A Z85 key may itself contain "#" and "=", so a line that is
// exactly a key is taken first.
func parseKeyLine(line string) (name, key string, ok bool, err error) {
	line = strings.TrimSpace(line)
	switch {
	case isZ85Key(line):
		return "", line, true, nil
	case line == "" || strings.HasPrefix(line, "#") || line == "curve" || line == "metadata":
		return "", "", false, nil
	}
	name, value, found := strings.Cut(line, "=")
	if !found {
		return "", "", false, fmt.Errorf("not a Z85 CurveZMQ key (40 characters)")
	}
	name = strings.TrimSpace(name)
	if name != "public-key" && name != "secret-key" {
		return "", "", false, nil // zcert metadata
	}
	if value = strings.Trim(strings.TrimSpace(value), `"`); !isZ85Key(value) {
		return "", "", false, fmt.Errorf("%s is not a Z85 CurveZMQ key (40 characters)", name)
	}
	return name, value, true, nil
}

func isZ85Key(s string) bool {
	return len(s) == 40 && strings.Trim(s, z85Alphabet) == ""
}
