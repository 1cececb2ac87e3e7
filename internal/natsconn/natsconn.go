// Package natsconn connects to NATS servers the way both ends of the
// JetStream path do: an edge's forwarder and a central's consumer log in
// with the same credentials and TLS settings, retry in the background and
// report disconnections the same way.
package natsconn

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Options are the servers and the login.
type Options struct {
	URLs []string
	// At most one way to log in (the configuration checks it).
	Creds, NKeySeed, User, Password, Token string
	// TLS: the servers' CA, and a client certificate.
	CA, Cert, Key string
}

// Connect connects to the servers with the options' credentials and TLS,
// retrying in the background (a server that is down at start is not an
// error) and for ever; onErr hears of disconnections and async errors.
func (o Options) Connect(name string, onErr func(error)) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				onErr(fmt.Errorf("disconnected from NATS: %w", err))
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			onErr(fmt.Errorf("NATS: %w", err))
		}),
		// A refused connection (wrong credentials, TLS) says why here.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			onErr(fmt.Errorf("connect to NATS: %w", err))
		}),
	}
	auth, err := o.authOptions()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(o.URLs, ","), append(opts, auth...)...)
	if err != nil {
		return nil, fmt.Errorf("NATS %s: %w", strings.Join(o.URLs, ","), err)
	}
	return nc, nil
}

func (o Options) authOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.NKeySeed != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed %s: %w", o.NKeySeed, err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	if o.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Cert, o.Key))
	}
	return opts, nil
}
