package replicator

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// stockEnv is a lone nats-server with default options (max_payload 1 MiB)
// and the platform's streams.
func stockEnv(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	c := clustertest.StartStock(t, 1)
	nc, err := nats.Connect(c.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.EqualValues(t, 1<<20, nc.MaxPayload(), "a default server's max payload")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = streams.Provision(clustertest.Context(t, 30*time.Second), js, streams.All(1), nil)
	require.NoError(t, err)
	return nc, js
}

func TestPublisherFitsEnvelopesToServerMaxPayload(t *testing.T) {
	nc, js := stockEnv(t)
	var logs clustertest.Buffer
	p, err := NewPublisher(js, WithEnvelope(), WithLogger(logs.Logger()),
		WithCompression(NoCompression, 0), WithLinger(time.Second), WithMaxBatchesInFlight(1))
	require.NoError(t, err, "an envelope Publisher with default options on a default server")
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	require.Contains(t, logs.String(), "envelope size limited by the server's max payload")
	require.Contains(t, logs.String(), "max_batch_bytes=1044480 configured=1048576 max_payload=1048576")

	// 255-byte events with no headers fill a batch of 1044480 bytes with
	// 4096 events when only payloads are counted; their envelope would be
	// 1052675 bytes, over the max payload. Every one must be stored.
	ctx := clustertest.Context(t, 60*time.Second)
	const n = 6000
	futures := make([]*Future, n)
	for i := range futures {
		data := bytes.Repeat([]byte{byte('a' + i%26)}, 255)
		futures[i], err = p.PublishAsync(ctx, Message{Subject: "events.fit", Data: data, Level: Quorum})
		require.NoError(t, err)
	}
	maxCount := 0
	for i, f := range futures {
		ack, err := f.Wait(ctx)
		require.NoError(t, err, "event %d", i)
		maxCount = max(maxCount, ack.Count)
	}
	require.Greater(t, maxCount, 1000, "events shared envelopes")
	require.NoError(t, nc.LastError())
}

func TestPublisherRefusesEventOverServerMaxPayload(t *testing.T) {
	_, js := stockEnv(t)
	for _, envelope := range []bool{false, true} {
		opts := []PublisherOption{WithLogger(clustertest.Logger())}
		if envelope {
			opts = append(opts, WithEnvelope())
		}
		p, err := NewPublisher(js, opts...)
		require.NoError(t, err)
		ctx := clustertest.Context(t, 10*time.Second)
		_, err = p.Publish(ctx, Message{Subject: "events.big", Data: make([]byte, 1<<20)})
		require.ErrorIs(t, err, ErrTooLarge, "envelope %t", envelope)
		require.NoError(t, p.Close(ctx))
	}
}

func TestIngestOnDefaultServer(t *testing.T) {
	nc, _ := stockEnv(t)
	var logs clustertest.Buffer
	s, err := New(Options{Conn: nc, Logger: logs.Logger(), Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.Contains(t, logs.String(), "event size limited by the server's max payload")
	require.Contains(t, logs.String(), "max_event_bytes=1044480 configured=1048576 max_payload=1048576")
	runIngest(t, s)
	client, err := nats.Connect(nc.ConnectedUrl())
	require.NoError(t, err)
	t.Cleanup(client.Close)

	tests := []struct {
		name string
		size int
		code string // "" means stored
	}{
		{"small", 100, ""},
		{"at the limit", 1<<20 - 4096, ""},
		{"over the limit, within the server's", 1<<20 - 1024, service.CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, serr := request(t, client, "ingest.sizes", bytes.Repeat([]byte("x"), tt.size), nil)
			if tt.code == "" {
				require.Nil(t, serr)
				require.NotZero(t, a.Seq)
				return
			}
			require.NotNil(t, serr, "want %s", tt.code)
			require.Equal(t, tt.code, serr.Code, serr.Message)
			require.True(t, strings.Contains(serr.Message, "1044480"), "message names the limit: %s", serr.Message)
		})
	}
}
