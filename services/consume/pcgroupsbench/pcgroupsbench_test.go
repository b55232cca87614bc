package pcgroupsbench

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
)

var (
	events     = flag.Int("events", 1_000_000, "events each side reads in the throughput rows")
	rounds     = flag.Int("rounds", 5, "member crashes each side's failover row measures")
	ackPending = flag.Int("ackpending", 10_000, "acknowledgements pending per pcgroups member consumer")
)

// open starts an embedded 3-node cluster (R3 file storage, fsync always,
// as platform bench consume runs it) with the platform's streams.
func open(tb testing.TB) *target.Target {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t, err := target.Open(ctx, target.Options{SyncAlways: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(t.Close)
	return t
}

// BenchmarkSideBySide runs pcgroups and the platform's group on the same
// events, count and connection placement, once, and prints every row:
//
//	go test -run XXX -bench SideBySide -benchtime 1x -timeout 60m ./services/consume/pcgroupsbench/ -args -events 1000000 -rounds 5
func BenchmarkSideBySide(b *testing.B) {
	if b.N > 1 {
		b.Skip("the benchmark runs once (the streams hold its events once): pass -benchtime 1x")
	}
	t := open(b)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	o := Options{Events: *events, Rounds: *rounds, MaxAckPending: *ackPending}
	if testing.Verbose() {
		o.Progress = os.Stderr // go test -v: progress bars
	}
	r := New(t, o)
	res, err := r.All(ctx)
	_ = bench.Print(os.Stdout, false, res...)
	if err != nil {
		b.Fatal(err)
	}
	for _, x := range res {
		if x.Seconds > 0 {
			b.ReportMetric(x.EventsPerSec, x.Name+"_ev/s")
		}
		if x.P50MS > 0 {
			b.ReportMetric(x.P50MS/1000, x.Name+"_p50_s")
			b.ReportMetric(x.P99MS/1000, x.Name+"_p99_s")
		}
	}
}

// TestBothSidesReadEveryEvent runs the throughput rows on a few events:
// each side acknowledges exactly the events published for it. Every wait
// is bounded: each row has a minute (a few seconds is usual under the
// race detector), and one that runs out says which side waited for what.
func TestBothSidesReadEveryEvent(t *testing.T) {
	tg := open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 2000
	r := New(tg, Options{Events: n})
	if err := r.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	for _, row := range []func(context.Context) (bench.Result, error){r.PCGroups, r.Platform} {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := row(rctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", res.Name, err)
		}
		if res.Events != n {
			t.Errorf("%s: %d distinct events acknowledged, want %d", res.Name, res.Events, n)
		}
		t.Logf("%s: %d events in %.2fs, %v acknowledged again", res.Name, res.Events, res.Seconds, res.Extra["duplicates"])
	}
}
