// Package natsconn is the one way platform processes connect to NATS: TLS,
// credentials (creds file, nkey seed or user and password), reconnects with
// jitter and no retry limit, a pool of one connection per node for
// publishers that want parallelism, and health measured by ping round trips.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Options say where and how to connect. The zero value connects to
// nats.DefaultURL without TLS or credentials.
type Options struct {
	// URL is a comma-separated list of server URLs (default nats.DefaultURL).
	URL string
	// Name is the connection name servers show (default "platform").
	Name string
	// CA verifies the servers' certificates; setting it turns TLS on.
	CA string
	// Cert and Key are a client certificate, for servers that verify
	// clients (mutual TLS).
	Cert, Key string
	// Creds is a NATS credentials file (JWT and seed).
	Creds string
	// NkeySeed is a file holding a user nkey seed.
	NkeySeed string
	// User and Password log in as a password user.
	User, Password string
	// InboxPrefix replaces _INBOX as the prefix of reply subjects. Under
	// the platform's --auth every user has its own (auth.InboxPrefix) and
	// may subscribe to no other inbox.
	InboxPrefix string
	// ReconnectWait is the base wait between reconnect attempts
	// (default 250ms); there is no limit on attempts.
	ReconnectWait time.Duration
	// ReconnectJitter is added at random to each wait, so a restarted
	// server is not met by every client at once (default 250ms, 1s with
	// TLS, whose handshakes cost more).
	ReconnectJitter time.Duration
	// Timeout bounds connecting to one server (default 5s).
	Timeout time.Duration
	// Logger receives disconnects and reconnects (default: discarded).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.URL == "" {
		o.URL = nats.DefaultURL
	}
	if o.Name == "" {
		o.Name = "platform"
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = 250 * time.Millisecond
	}
	if o.ReconnectJitter == 0 {
		o.ReconnectJitter = 250 * time.Millisecond
		if o.tls() {
			o.ReconnectJitter = time.Second
		}
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) tls() bool { return o.CA != "" || o.Cert != "" }

func (o *Options) validate() error {
	if (o.Cert == "") != (o.Key == "") {
		return errors.New("a client certificate needs both cert and key")
	}
	n := 0
	for _, set := range []bool{o.Creds != "", o.NkeySeed != "", o.User != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("give one of creds, nkey seed, or user and password")
	}
	return nil
}

// natsOptions returns the nats.go options for o.
func (o *Options) natsOptions() ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(o.ReconnectJitter, o.ReconnectJitter),
		nats.Timeout(o.Timeout),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				o.Logger.Warn("nats disconnected", "component", "nats-client", "name", o.Name, "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			o.Logger.Info("nats reconnected", "component", "nats-client", "name", o.Name, "url", nc.ConnectedUrlRedacted())
		}),
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	if o.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Cert, o.Key))
	}
	switch {
	case o.Creds != "":
		opts = append(opts, nats.UserCredentials(o.Creds))
	case o.NkeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(o.NkeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed %s: %w", o.NkeySeed, err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	return opts, nil
}

// Connect opens one connection with failover across opts.URL. extra
// options (handlers, a custom inbox prefix) are applied after the
// factory's.
func Connect(opts Options, extra ...nats.Option) (*nats.Conn, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	no, err := opts.natsOptions()
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	nc, err := nats.Connect(opts.URL, append(no, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", opts.URL, err)
	}
	return nc, nil
}

// Pool is one connection per server, for publishers that spread load over
// nodes; each connection prefers its own server and fails over to the
// others.
type Pool struct {
	conns []*nats.Conn
	next  atomic.Uint64
}

// OpenPool opens one connection per URL of opts.URL.
func OpenPool(opts Options, extra ...nats.Option) (*Pool, error) {
	opts.setDefaults()
	urls := strings.Split(opts.URL, ",")
	p := &Pool{}
	for i := range urls {
		// This connection's own server first, the rest as failover.
		order := append([]string{urls[i]}, append(append([]string(nil), urls[:i]...), urls[i+1:]...)...)
		o := opts
		o.URL = strings.Join(order, ",")
		o.Name = fmt.Sprintf("%s-%d", opts.Name, i+1)
		nc, err := Connect(o, append([]nats.Option{nats.DontRandomize()}, extra...)...)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.conns = append(p.conns, nc)
	}
	return p, nil
}

// Conns returns the pool's connections.
func (p *Pool) Conns() []*nats.Conn { return p.conns }

// Next returns the pool's connections in turn.
func (p *Pool) Next() *nats.Conn {
	return p.conns[(p.next.Add(1)-1)%uint64(len(p.conns))]
}

// Close closes every connection.
func (p *Pool) Close() {
	for _, nc := range p.conns {
		nc.Close()
	}
}

// Health is a connection's state measured by a ping round trip.
type Health struct {
	// Name is the connection's name.
	Name string
	// URL is the server it is connected to ("" when disconnected).
	URL string
	// RTT is the ping round trip; 0 with Err set.
	RTT time.Duration
	// Err says why the ping failed.
	Err error
}

// Check pings nc once, bounded by ctx.
func Check(ctx context.Context, nc *nats.Conn) Health {
	h := Health{Name: nc.Opts.Name, URL: nc.ConnectedUrlRedacted()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.RTT, h.Err = nc.RTT()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return Health{Name: h.Name, URL: h.URL, Err: ctx.Err()}
	}
	return h
}

// Health pings every connection of the pool.
func (p *Pool) Health(ctx context.Context) []Health {
	out := make([]Health, len(p.conns))
	for i, nc := range p.conns {
		out[i] = Check(ctx, nc)
	}
	return out
}
