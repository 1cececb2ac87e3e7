package curve

import (
	"errors"
	"fmt"
	"log/slog"

	zmq "github.com/pebbe/zmq4"

	"aggregator/internal/envconf"
)

// KeyFiles are the CurveZMQ settings both binaries read, embedded in their
// Config so that the variables are PREFIX_CURVE_*.
type KeyFiles struct {
	SecretKeyFile       string `envconfig:"CURVE_SECRET_KEY_FILE" desc:"this process's CurveZMQ secret certificate (-curve-keygen DIR/NAME writes DIR/NAME_secret and the public DIR/NAME); bind endpoints then accept only CurveZMQ peers, who need the public one"`
	AllowedKeysFile     string `envconfig:"CURVE_ALLOWED_KEYS_FILE" desc:"the peers allowed on CurveZMQ bind endpoints: a directory of their public certificates (czmq's and pyzmq's format; files ending in _secret are skipped), or a file of their public keys; read again within a second when it changes; empty allows any peer that knows this process's public key"`
	ServerPublicKeyFile string `envconfig:"CURVE_SERVER_PUBLIC_KEY_FILE" desc:"file with the CurveZMQ public key of the peers this process connects to; connect endpoints then use CurveZMQ (needs the secret key file too)"`
}

// Keys are the loaded key files.
type Keys struct {
	ID      *Identity // nil: no CurveZMQ
	Server  string    // public key connect endpoints expect; "" for plain text
	Allowed []string  // nil: any peer that knows ID.Public
	// AllowedFrom is the file or directory Allowed was read from, watched
	// for changes.
	AllowedFrom string
}

// Validate adds to p what is wrong with the settings on their own.
func (k *KeyFiles) Validate(p *envconf.Problems) {
	if k.SecretKeyFile != "" {
		return
	}
	if k.ServerPublicKeyFile != "" {
		p.Add("CURVE_SECRET_KEY_FILE", "needed with a server public key file: a CurveZMQ client has a key pair of its own")
	}
	if k.AllowedKeysFile != "" {
		p.Add("CURVE_SECRET_KEY_FILE", "needed with an allowed keys file: only CurveZMQ bind endpoints check keys")
	}
}

// Load reads the key files; each problem names its variable PREFIX_CURVE_*.
func (k *KeyFiles) Load(prefix string) (Keys, error) {
	var keys Keys
	p := envconf.NewProblems(prefix)
	if k.SecretKeyFile != "" {
		id, err := LoadSecret(k.SecretKeyFile)
		p.AddErr("CURVE_SECRET_KEY_FILE", err)
		if err == nil {
			keys.ID = &id
		}
	}
	if k.ServerPublicKeyFile != "" {
		var err error
		keys.Server, err = LoadPublic(k.ServerPublicKeyFile)
		p.AddErr("CURVE_SERVER_PUBLIC_KEY_FILE", err)
	}
	if k.AllowedKeysFile != "" {
		var err error
		keys.Allowed, err = LoadAllowed(k.AllowedKeysFile)
		keys.AllowedFrom = k.AllowedKeysFile
		p.AddErr("CURVE_ALLOWED_KEYS_FILE", err)
	}
	if err := p.Err(); err != nil {
		return Keys{}, err
	}
	return keys, nil
}

// errNoKey is returned by readKey for a file with no key.
var errNoKey = errors.New("no key in the file")

func noKey(path, want string) error { return fmt.Errorf("%s: %w (%s)", path, errNoKey, want) }

// Authenticator starts the ZAP handler for the allow-list on zctx, or
// returns nil when any peer may connect.
func (k Keys) Authenticator(zctx *zmq.Context, log *slog.Logger) (*Authenticator, error) {
	if k.Allowed == nil {
		return nil, nil
	}
	a, err := NewAuthenticator(zctx, k.Allowed, k.AllowedFrom, log.With("component", "auth"))
	if err != nil {
		return nil, fmt.Errorf("CurveZMQ authenticator: %w", err)
	}
	return a, nil
}
