// Package console serves the operator's console: the embedded pages
// (console/web) and the JSON API they call (API.md), on the HTTP listener
// of `platform run`. It reads the platform through the process's own NATS
// connection and Prometheus registry, keeps the last 15 minutes of ingest
// figures in memory, and guards every change with a session role and a
// CSRF token.
package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/klauspost/compress/gzhttp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// Options configure the console. Fields are read once, by New.
type Options struct {
	// Users is the users file of --auth: nil serves the console without
	// login, and then only to loopback clients.
	Users *auth.File
	// Ready is /readyz's check: nil when ready, else every reason joined
	// (errors.Join). Required.
	Ready func(ctx context.Context) error
	// Gatherer is the process's Prometheus registry, sampled each second
	// for the 15-minute series (nil: no series).
	Gatherer prometheus.Gatherer
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL time.Duration
	// Logger receives the console's log lines (default slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.SessionTTL == 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	if o.Ready == nil {
		return errors.New("console: Ready is required")
	}
	if o.SessionTTL < 0 {
		return errors.New("console: negative SessionTTL")
	}
	return nil
}

// Platform is what the console reads once the process is connected.
type Platform struct {
	// Conn is the process's NATS connection.
	Conn *nats.Conn
	// JS is a JetStream context on Conn.
	JS jetstream.JetStream
	// Cluster is the embedded cluster's node view (nil on an external
	// cluster).
	Cluster admin.Cluster
}

// Console is the console's HTTP handler. Its API answers 503 until
// Start hands it the connected platform; login works before.
type Console struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	zipped   http.Handler // mux, its answers compressed for clients that accept it
	sessions *sessions
	series   *series
	xorigin  *http.CrossOriginProtection

	// KV MEMBERS and WEIGHTS in memory, followed from Start on.
	members *kvView[*tracked]
	weights *kvView[*balancer.Record]

	mu    sync.Mutex
	plat  *Platform
	tails int // live tails open
}

// New returns the console. Call Start once NATS is connected and Run for
// the background sampling.
func New(opts Options) (*Console, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c := &Console{
		opts:     opts,
		log:      opts.Logger.With("component", "console"),
		sessions: newSessions(opts.SessionTTL),
		series:   newSeries(seriesPoints),
		xorigin:  http.NewCrossOriginProtection(),
		members:  newKVView[*tracked](streams.BucketMembers),
		weights:  newKVView[*balancer.Record](streams.BucketWeights),
	}
	c.routes()
	zip, err := gzhttp.NewWrapper(gzhttp.MinSize(1024))
	if err != nil {
		return nil, fmt.Errorf("console: compression: %w", err)
	}
	c.zipped = zip(c.mux)
	return c, nil
}

// platform returns the connected platform, or nil before Start.
func (c *Console) platform() *Platform {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plat
}

// Start hands the console the connected platform and starts following
// KV MEMBERS and WEIGHTS in the background until ctx ends. It does not
// wait for the buckets: a missing bucket is retried, and the members and
// balancer pages answer 503 until their view is synced.
func (c *Console) Start(ctx context.Context, p Platform) {
	c.mu.Lock()
	c.plat = &p
	c.mu.Unlock()
	go follow(ctx, p.JS, c.log, c.members, putMember(c.members))
	go follow(ctx, p.JS, c.log, c.weights, putWeight(c.weights))
}

// Run samples the process's metrics each second into the 15-minute
// series until ctx ends.
func (c *Console) Run(ctx context.Context) {
	if c.opts.Gatherer == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	c.series.sample(c.opts.Gatherer, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.series.sample(c.opts.Gatherer, now)
		}
	}
}

// ServeHTTP serves the pages and the API.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", policy())
	if c.opts.Users == nil && !loopback(r) {
		fail(w, http.StatusForbidden, codeForbidden, "the console without --auth answers only loopback clients: run platform run with --auth to open it to others")
		return
	}
	if r.URL.Path == apiPrefix+"events/tail" {
		// Server-sent events go out as they come, never held for a
		// compressor's block.
		c.mux.ServeHTTP(w, r)
		return
	}
	c.zipped.ServeHTTP(w, r)
}
