package replicator

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
)

// env is a cluster with the platform's streams provisioned.
type env struct {
	c  *cluster.Cluster
	nc *nats.Conn
	js jetstream.JetStream
}

func newEnv(t testing.TB, nodes int) *env {
	t.Helper()
	c, nc, js := clustertest.Provisioned(t, nodes)
	return &env{c: c, nc: nc, js: js}
}

func (e *env) publisher(t *testing.T, opts ...PublisherOption) *Publisher {
	t.Helper()
	opts = append([]PublisherOption{WithLogger(clustertest.Logger())}, opts...)
	p, err := NewPublisher(e.js, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// readAll reads events with an ordered Reader until n are read.
func readAll(t *testing.T, js jetstream.JetStream, n int, opts ...ReaderOption) []Event {
	t.Helper()
	ctx := clustertest.Context(t, 30*time.Second)
	r, err := NewReader(ctx, js, opts...)
	require.NoError(t, err)
	defer r.Close()
	var out []Event
	for len(out) < n {
		ev, err := r.Next(ctx)
		require.NoError(t, err, "after %d of %d events", len(out), n)
		out = append(out, ev)
	}
	return out
}
