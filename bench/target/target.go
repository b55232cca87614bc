// Package target opens the cluster a benchmark runs against: an embedded
// cluster on free loopback ports with temporary storage, or any cluster
// given by URL, with the platform's streams provisioned.
package target

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/streams"
)

// Target is the cluster a benchmark runs against.
type Target struct {
	// Conn is a connection to it.
	Conn *nats.Conn
	// JS is a JetStream context on Conn.
	JS jetstream.JetStream
	// Cluster is the embedded cluster when the benchmark started one, else nil.
	Cluster *cluster.Cluster
	// URL is the client URL list.
	URL string

	dir string
}

// Connect opens a new connection to the target, for benchmarks that need
// one connection per simulated client.
//
// Every connection goes to the first URL that answers, in the order given
// (nats.go would otherwise pick a random server per connection): the sides
// of a benchmark then talk to the same node, and a run compares like with
// like. Server names which node that is.
func (t *Target) Connect() (*nats.Conn, error) {
	return nats.Connect(t.URL, nats.MaxReconnects(-1), nats.DontRandomize())
}

// Server returns the name of the server the benchmark's connections use.
func (t *Target) Server() string {
	if t.Conn == nil {
		return ""
	}
	return t.Conn.ConnectedServerName()
}

// Close closes the connection and stops an embedded cluster, removing its
// temporary storage.
func (t *Target) Close() {
	if t.Conn != nil {
		t.Conn.Close()
	}
	if t.Cluster != nil {
		t.Cluster.Shutdown()
	}
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
}

// Options choose the benchmark's cluster.
type Options struct {
	// Server is a NATS URL list; empty starts an embedded cluster.
	Server string
	// Nodes is the embedded cluster's size (default 3).
	Nodes int
	// SyncAlways is the embedded cluster's fsync policy.
	SyncAlways bool
	// SyncInterval is how often the embedded cluster fsyncs when
	// SyncAlways is false (default: the server's own).
	SyncInterval time.Duration
	// Replicas is the stream replica count when Server is set (default 3).
	Replicas int
	// Logger receives the embedded servers' logs (default: discarded).
	Logger *slog.Logger
}

// Open connects to opts.Server, or starts an embedded cluster on free
// loopback ports with temporary storage, then provisions the platform's
// streams (sized to the cluster) so every benchmark finds them.
func Open(ctx context.Context, opts Options) (*Target, error) {
	t := &Target{URL: opts.Server}
	replicas := 3
	if t.URL == "" {
		if opts.Nodes == 0 {
			opts.Nodes = 3
		}
		if opts.Logger == nil {
			opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		dir, err := os.MkdirTemp("", "platform-bench-")
		if err != nil {
			return nil, err
		}
		t.dir = dir
		cp, err := cluster.FreePorts("127.0.0.1", opts.Nodes)
		if err != nil {
			t.Close()
			return nil, err
		}
		rp, err := cluster.FreePorts("127.0.0.1", opts.Nodes)
		if err != nil {
			t.Close()
			return nil, err
		}
		c, err := cluster.Start(ctx, cluster.Options{
			Nodes: opts.Nodes, DataDir: dir, ClientPort: cp, ClusterPort: rp,
			SyncAlways: opts.SyncAlways, SyncInterval: opts.SyncInterval, Logger: opts.Logger,
		})
		if err != nil {
			t.Close()
			return nil, err
		}
		t.Cluster = c
		t.URL = strings.Join(c.ClientURLs(), ",")
		replicas = c.Replicas()
	}
	nc, err := t.Connect()
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("connect %s: %w", t.URL, err)
	}
	t.Conn = nc
	t.JS, err = jetstream.New(nc)
	if err != nil {
		t.Close()
		return nil, err
	}
	if t.Cluster == nil && opts.Replicas > 0 {
		replicas = opts.Replicas
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := streams.Provision(pctx, t.JS, streams.All(replicas), nil); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}
