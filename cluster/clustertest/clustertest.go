// Package clustertest starts real embedded JetStream clusters for tests: 1 or
// 3 nodes on free loopback ports, storage in a temporary directory, shut down
// automatically when the test ends.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/streams"
)

// ReadyTimeout bounds how long a test waits for a cluster to form.
const ReadyTimeout = 30 * time.Second

// clusterSeq numbers the clusters of this test process.
var clusterSeq atomic.Int64

// Start starts an n-node cluster (n is 1 or 3) on free ports with temporary
// storage and registers its shutdown with t.Cleanup.
func Start(t testing.TB, n int) *cluster.Cluster {
	t.Helper()
	return StartWith(t, cluster.Options{Nodes: n})
}

// StartWith is Start with options; unset ports, storage and the logger are
// chosen for the test.
func StartWith(t testing.TB, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.ClientPort == 0 {
		opts.ClientPort = FreePortRange(t, opts.Nodes)
	}
	for opts.ClusterPort == 0 {
		// Free ranges are not held: draw again if the two overlap.
		p := FreePortRange(t, opts.Nodes)
		if p+opts.Nodes <= opts.ClientPort || opts.ClientPort+opts.Nodes <= p {
			opts.ClusterPort = p
		}
	}
	if opts.Name == "" && opts.ConfigFile == "" {
		// A name of its own: a node of another test process that dials
		// a port this cluster has since taken cannot join it.
		opts.Name = fmt.Sprintf("test-%d-%d", os.Getpid(), clusterSeq.Add(1))
	}
	if opts.Logger == nil {
		opts.Logger = Logger()
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = ReadyTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.ReadyTimeout)
	defer cancel()
	c, err := cluster.Start(ctx, opts)
	require.NoError(t, err, "start %d-node cluster", opts.Nodes)
	t.Cleanup(c.Shutdown)
	return c
}

// Logger returns the logger tests give embedded servers: silent unless
// PLATFORM_TEST_LOG is set (to a level such as debug, info or warn).
func Logger() *slog.Logger {
	lvl := os.Getenv("PLATFORM_TEST_LOG")
	if lvl == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(lvl))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// FreePortRange returns the first of n consecutive free TCP ports on
// 127.0.0.1.
func FreePortRange(t testing.TB, n int) int {
	t.Helper()
	p, err := cluster.FreePorts("127.0.0.1", n)
	require.NoError(t, err)
	return p
}

// Connect opens a client connection to every node of c (so it fails over)
// and closes it when the test ends.
func Connect(t testing.TB, c *cluster.Cluster, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.Timeout(2 * time.Second),
	}, opts...)
	nc, err := nats.Connect(strings.Join(c.ClientURLs(), ","), opts...)
	require.NoError(t, err, "connect to cluster")
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection to c.
func JetStream(t testing.TB, c *cluster.Cluster) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := Connect(t, c)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

// Eventually calls cond until it returns nil or the deadline passes, then
// fails the test with cond's last error.
func Eventually(t testing.TB, deadline time.Duration, cond func() error) {
	t.Helper()
	end := time.Now().Add(deadline)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("condition not met within %s: %v", deadline, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Next is c.Next waiting up to wait, asked again when it meets no
// responders: a consumer just created on another node is reachable from
// this one only once the interest in its subjects has crossed the route,
// a moment later.
func Next(c jetstream.Consumer, wait time.Duration) (jetstream.Msg, error) {
	end := time.Now().Add(wait)
	for {
		m, err := c.Next(jetstream.FetchMaxWait(max(time.Until(end), 10*time.Millisecond)))
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(end) {
			return m, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Provisioned is Start followed by provisioning every platform stream and
// KV bucket at the cluster's replica count; it returns the cluster and a
// JetStream context on a new connection.
func Provisioned(t testing.TB, n int) (*cluster.Cluster, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	c := Start(t, n)
	nc, js := JetStream(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	_, err := streams.Provision(ctx, js, streams.All(c.Replicas()), nil)
	require.NoError(t, err, "provision streams")
	return c, nc, js
}
