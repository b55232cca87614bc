package cluster_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
)

// BenchmarkSyncPolicy measures what fsync-always costs: R3 publishes on an
// embedded 3-node cluster with fsync before every acknowledgement against
// the server's default of fsync every two minutes, for one publisher
// waiting on each ack and for 256 acks in flight.
//
//	go test -run '^$' -bench SyncPolicy -benchtime 3s ./cluster/
func BenchmarkSyncPolicy(b *testing.B) {
	for _, policy := range []struct {
		name   string
		always bool
	}{{"always", true}, {"default-2m", false}} {
		b.Run(policy.name, func(b *testing.B) {
			c := clustertest.StartWith(b, cluster.Options{Nodes: 3, SyncAlways: policy.always})
			_, js := clustertest.JetStream(b, c)
			ctx := context.Background()
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{
				Name: "BENCH", Subjects: []string{"bench.>"}, Replicas: 3, Storage: jetstream.FileStorage,
			})
			require.NoError(b, err)
			payload := make([]byte, 128)

			b.Run("sync", func(b *testing.B) {
				b.SetBytes(int64(len(payload)))
				for b.Loop() {
					if _, err := js.Publish(ctx, "bench.sync", payload); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
			b.Run("async-256", func(b *testing.B) {
				ajs, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(256))
				require.NoError(b, err)
				b.SetBytes(int64(len(payload)))
				for b.Loop() {
					if _, err := ajs.PublishAsync("bench.async", payload); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-ajs.PublishAsyncComplete():
				case <-ctx.Done():
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		})
	}
}
