package replicatorbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/replicator"
)

// openBench starts an embedded 3-node cluster for a Go benchmark (fsync
// on every write, the platform default, unless PLATFORM_BENCH_SYNC=0).
func openBench(b *testing.B) *target.Target {
	b.Helper()
	t, err := target.Open(context.Background(), target.Options{
		Nodes: 3, SyncAlways: os.Getenv("PLATFORM_BENCH_SYNC") != "0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(t.Close)
	return t
}

func report(b *testing.B, rs ...bench.Result) {
	for _, r := range rs {
		b.Logf("%s: %d events in %.2fs = %.0f events/s p50 %.3fms p95 %.3fms p99 %.3fms %v",
			r.Name, r.Events, r.Seconds, r.EventsPerSec, r.P50MS, r.P95MS, r.P99MS, r.Extra)
	}
	last := rs[len(rs)-1]
	b.ReportMetric(last.EventsPerSec, "events/s")
	b.ReportMetric(last.P99MS, "p99-ms")
	for k, v := range last.Extra {
		if len(k) > 6 && k[:6] == "ratio_" {
			b.ReportMetric(v, k)
		}
	}
}

// BenchmarkPublish is `platform bench publish`: the Publisher (one message
// per event, quorum) against raw nats.go async publishing, b.N events each.
func BenchmarkPublish(b *testing.B) {
	t := openBench(b)
	for _, envelope := range []bool{false, true} {
		b.Run(fmt.Sprintf("envelope=%t", envelope), func(b *testing.B) {
			n := max(b.N, 1000)
			if envelope {
				n *= 10
			}
			rs, err := Publish(context.Background(), t, envelope, Options{Events: n})
			if err != nil {
				b.Fatal(err)
			}
			report(b, rs...)
		})
	}
}

// BenchmarkIngest is `platform bench ingest`: request clients through the
// ingest service at quorum against clients publishing synchronously.
func BenchmarkIngest(b *testing.B) {
	t := openBench(b)
	clients := 100
	per := max(b.N/clients, 10)
	rs, err := Ingest(context.Background(), t, Options{Clients: clients, Events: per}, replicator.Options{})
	if err != nil {
		b.Fatal(err)
	}
	report(b, rs...)
}

// BenchmarkCompress is `platform bench compress`.
func BenchmarkCompress(b *testing.B) {
	rs, err := Compress(max(b.N, 10_000), 128, 1000, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range rs {
		b.Logf("%s: ratio %.2f, %.0f MB/s, decode %.0f MB/s", r.Name, r.Extra["ratio"], r.Extra["mb_per_s"], r.Extra["decode_mb_per_s"])
	}
}
