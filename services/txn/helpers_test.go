package txn

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// env is a cluster with the platform's streams and a store on STATE.
type env struct {
	c     *cluster.Cluster
	nc    *nats.Conn
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	store *Store
}

func newEnv(t *testing.T, nodes int) *env {
	t.Helper()
	c, nc, js := clustertest.Provisioned(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	store, err := NewStore(nc, WithLogger(clustertest.Logger()))
	require.NoError(t, err)
	return &env{c: c, nc: nc, js: js, kv: kv, store: store}
}

// addBucket creates another bucket configured like STATE, for tests that
// need two identical starting states.
func (e *env) addBucket(t *testing.T, name string) *Store {
	t.Helper()
	var cfg jetstream.StreamConfig
	for _, s := range streams.All(e.c.Replicas()) {
		if s.Name == streams.KVStream(streams.BucketState) {
			cfg = s
		}
	}
	cfg.Name = streams.KVStream(name)
	cfg.Subjects = []string{streams.KVSubject(name, ">")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := streams.Provision(ctx, e.js, []jetstream.StreamConfig{cfg}, nil)
	require.NoError(t, err)
	s, err := NewStore(e.nc, WithBucket(name), WithLogger(clustertest.Logger()))
	require.NoError(t, err)
	return s
}

// put writes key through the store (no expectation) and returns its revision.
func put(t *testing.T, s *Store, key, value string) uint64 {
	t.Helper()
	revs, err := s.Commit(clustertest.Context(t, 10*time.Second), Commit{Writes: map[string][]byte{key: []byte(value)}})
	require.NoError(t, err)
	return revs[key]
}
