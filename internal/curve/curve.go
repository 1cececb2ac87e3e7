// Package curve reads CurveZMQ keys from files and applies them to
// sockets. A key file holds one Z85-encoded key (40 characters), either
// alone on a line or as `public-key = "..."` / `secret-key = "..."` in the
// style of zcert files; lines starting with # are comments.
package curve

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	zmq "github.com/pebbe/zmq4"
)

// z85Alphabet is the character set of Z85 (ZeroMQ RFC 32).
const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// Identity is a key pair: who this process is.
type Identity struct {
	Public, Secret string
}

// LoadSecret reads a secret key file and derives the public key.
func LoadSecret(path string) (Identity, error) {
	secret, err := readKey(path, "secret-key")
	if err != nil {
		return Identity{}, err
	}
	public, err := zmq.AuthCurvePublic(secret)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: derive public key: %w", path, err)
	}
	return Identity{Public: public, Secret: secret}, nil
}

// LoadPublic reads a public key file.
func LoadPublic(path string) (string, error) { return readKey(path, "public-key") }

// readKey returns the key named want (a zcert file holds both keys of a
// secret certificate), or else the first bare key.
func readKey(path, want string) (string, error) {
	if !zmq.HasCurve() {
		return "", errors.New("this libzmq was built without CurveZMQ")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	bare := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, key, ok, err := parseKeyLine(sc.Text())
		switch {
		case err != nil:
			return "", fmt.Errorf("%s: %w", path, err)
		case ok && name == want:
			return key, nil
		case ok && name == "" && bare == "":
			bare = key
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if bare == "" {
		return "", noKey(path, want)
	}
	return bare, nil
}

// Server makes sock a CurveZMQ server with id: every peer must encrypt,
// and knows this side by id.Public. Call before Bind or Connect.
func Server(sock *zmq.Socket, id Identity) error {
	return errors.Join(sock.SetCurveServer(1), sock.SetCurveSecretkey(id.Secret))
}

// Client makes sock a CurveZMQ client of the server with public key
// server. Call before Bind or Connect.
func Client(sock *zmq.Socket, id Identity, server string) error {
	return errors.Join(sock.SetCurveServerkey(server), sock.SetCurvePublickey(id.Public), sock.SetCurveSecretkey(id.Secret))
}

// Keygen writes a new key pair to prefix+".secret" (mode 0600) and
// prefix+".public", and returns the two paths.
func Keygen(prefix string) (secretPath, publicPath string, err error) {
	public, secret, err := zmq.NewCurveKeypair()
	if err != nil {
		return "", "", err
	}
	secretPath, publicPath = prefix+".secret", prefix+".public"
	name := filepath.Base(prefix)
	if err := os.WriteFile(secretPath, fmt.Appendf(nil, "# CurveZMQ secret key %s: keep it private\nsecret-key = %q\n", name, secret), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(publicPath, fmt.Appendf(nil, "# CurveZMQ public key %s\npublic-key = %q\n", name, public), 0o644); err != nil {
		return "", "", err
	}
	return secretPath, publicPath, nil
}
