package curve

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"sync/atomic"
)

// zapEndpoint is where libzmq looks for the authentication handler of a
// context (ZeroMQ RFC 27).
const zapEndpoint = "inproc://zeromq.zap.01"

// LoadAllowed reads the public keys of the peers allowed in, from a file
// (keys one per line, Z85 or `public-key = "..."`, such as public
// certificates concatenated) or from a directory of public certificates,
// as czmq's zcertstore and pyzmq's create_certificates keep them: every
// file but those ending in _secret and hidden ones. An allow-list with no
// key is an error: it would refuse every peer, which is never meant.
func LoadAllowed(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var keys []string
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !allowedCert(path, e) {
				continue
			}
			k, err := readPublicKeys(filepath.Join(path, e.Name()))
			if err != nil {
				return nil, err
			}
			keys = append(keys, k...)
		}
	} else if keys, err = readPublicKeys(path); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no public key in it: an empty allow-list would refuse every peer", path)
	}
	return keys, nil
}

// allowedCert reports whether a directory entry is a public certificate:
// a regular file, or a link to one (a mounted secret is often links).
func allowedCert(dir string, e os.DirEntry) bool {
	name := e.Name()
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, SecretSuffix) {
		return false
	}
	info, err := os.Stat(filepath.Join(dir, name))
	return err == nil && info.Mode().IsRegular()
}

// readPublicKeys reads every public key of one file.
func readPublicKeys(path string) ([]string, error) {
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
	return keys, sc.Err()
}

// allowedStamp sums up what the allow-list's files look like now: their
// names, sizes, times and inodes, links followed. A change means the list
// is read again.
func allowedStamp(path string) string {
	info, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	stamp := fileStamp(info)
	if info.IsDir() {
		entries, _ := os.ReadDir(path)
		for _, e := range entries {
			if fi, err := os.Stat(filepath.Join(path, e.Name())); err == nil && allowedCert(path, e) {
				stamp += e.Name() + "/" + fileStamp(fi)
			}
		}
	}
	return stamp
}

func fileStamp(info os.FileInfo) string {
	stamp := fmt.Sprintf("%d/%d", info.Size(), info.ModTime().UnixNano())
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		stamp += fmt.Sprintf("/%d/%d.%d", st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return stamp + ";"
}

// Authenticator is a ZAP handler: it lets CurveZMQ clients in only if
// their public key is allowed. One goroutine (Run) owns its socket.
type Authenticator struct {
	sock    *zmq.Socket
	allowed map[string]bool // binary 32-byte keys, as libzmq hands them over
	from    string          // the allow-list's file or directory, watched for changes; "" for none
	stamp   string          // what it looked like when last read
	failed  string          // what it looked like when it last failed to read
	log     *slog.Logger
	logged  map[string]time.Time // when each refused key was last logged
	reloads atomic.Int64         // allow-lists read again and put in force
}

// reloadEvery is how often the allow-list's files are looked at: a client
// added or removed takes effect within it, without a restart.
const reloadEvery = time.Second

// NewAuthenticator binds the ZAP endpoint of zctx. It must exist before
// any CurveZMQ server socket of zctx takes a connection. from, when not
// empty, is where allowed came from; it is read again when it changes.
func NewAuthenticator(zctx *zmq.Context, allowed []string, from string, log *slog.Logger) (*Authenticator, error) {
	a := &Authenticator{log: log, logged: map[string]time.Time{}, from: from}
	a.allow(allowed)
	if from != "" {
		a.stamp = allowedStamp(from)
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

func (a *Authenticator) allow(keys []string) {
	a.allowed = map[string]bool{}
	for _, k := range keys {
		a.allowed[zmq.Z85decode(k)] = true
	}
}

// reload reads the allow-list again if its files changed. A list that
// cannot be read, or holds no key, leaves the one in force, and says so.
func (a *Authenticator) reload() {
	stamp := allowedStamp(a.from)
	if stamp == a.stamp || stamp == a.failed {
		return
	}
	keys, err := LoadAllowed(a.from)
	if err != nil {
		a.failed = stamp // said once; tried again at the next change
		a.log.Error("CurveZMQ allow-list not reloaded; the previous one stays", "from", a.from, "err", err)
		return
	}
	a.stamp, a.failed = stamp, ""
	a.allow(keys)
	a.reloads.Add(1)
	a.log.Info("CurveZMQ allow-list reloaded", "from", a.from, "keys", len(a.allowed))
}

// Close closes the socket of an authenticator whose Run never started.
func (a *Authenticator) Close() { a.sock.Close() }

// Run answers requests until ctx is done, then closes the socket.
func (a *Authenticator) Run(ctx context.Context) {
	defer a.sock.Close()
	poller := zmq.NewPoller()
	poller.Add(a.sock, zmq.POLLIN)
	nextReload := time.Now().Add(reloadEvery)
	for ctx.Err() == nil {
		if a.from != "" && time.Now().After(nextReload) {
			a.reload()
			nextReload = time.Now().Add(reloadEvery)
		}
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
