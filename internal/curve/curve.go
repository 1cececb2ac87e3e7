// Package curve reads CurveZMQ keys from files and applies them to
// sockets. Key files are certificates as czmq (zcert) and pyzmq
// (zmq.auth) write them: ZPL text with a curve section holding
// `public-key = "..."`, and `secret-key = "..."` in the secret one. A file
// holding one bare Z85 key (40 characters) on a line is read too; lines
// starting with # are comments.
package curve

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"time"

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

// Keygen writes a new certificate pair as czmq names it: the public
// certificate at path and the secret one at path+"_secret" (mode 0600), in
// the format czmq's zcert and pyzmq's load_certificate read. It returns
// the two paths.
func Keygen(path string) (secretPath, publicPath string, err error) {
	public, secret, err := zmq.NewCurveKeypair()
	if err != nil {
		return "", "", err
	}
	secretPath, publicPath = path+SecretSuffix, path
	now := time.Now().UTC().Format(time.RFC3339)
	if err := writeCert(secretPath, fmt.Sprintf(secretBanner, now), public, secret, 0o600); err != nil {
		return "", "", err
	}
	if err := writeCert(publicPath, fmt.Sprintf(publicBanner, now), public, "", 0o644); err != nil {
		return "", "", err
	}
	return secretPath, publicPath, nil
}

// SecretSuffix ends the name of a secret certificate (czmq's zcert_save).
const SecretSuffix = "_secret"

const (
	publicBanner = `#   ****  Generated on %s by aggregator  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange.

`
	secretBanner = `#   ****  Generated on %s by aggregator  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

`
)

func writeCert(path, banner, public, secret string, mode os.FileMode) error {
	text := banner + "metadata\ncurve\n    public-key = \"" + public + "\"\n"
	if secret != "" {
		text += "    secret-key = \"" + secret + "\"\n"
	}
	return os.WriteFile(path, []byte(text), mode)
}
