package console_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// balancerPage is GET /console/api/balancer as the test reads it.
type balancerPage struct {
	Total     int
	Matched   int
	Services  int
	Counts    map[string]int
	Instances []struct {
		balancer.Record
		WeightShare float64 `json:"weight_share"`
		ServedShare float64 `json:"served_share"`
	}
}

// TestConsoleBalancerPages writes 3,000 WEIGHTS records of one service
// straight into the bucket (more than one multi_last direct get answers)
// and reads them back in sorted, filtered pages.
func TestConsoleBalancerPages(t *testing.T) {
	p := startPlatform(t)
	ctx := clustertest.Context(t, 2*time.Minute)
	const n, svc = 3000, "bulk"

	// Weights repeat (191 values), rates too (97 values), so ties are
	// broken by key; every fifth instance is in blackout.
	recs := make([]balancer.Record, n)
	var weightSum, rpsSum float64
	for i := range recs {
		r := balancer.Record{Service: svc, Instance: fmt.Sprintf("i%04d", i), Weight: float64(10 + i*7919%191),
			Target: float64(10 + i*104729%193), Reason: balancer.ReasonPolicy,
			Inputs:    balancer.Inputs{LatencyMS: float64(i%50) / 10, RPS: float64(i * 31 % 97), State: membership.Alive},
			FirstSeen: time.Now().Add(-time.Hour).UTC(), LastReport: time.Now().UTC()}
		if i%5 == 0 {
			r.Reason = balancer.ReasonBlackout + "+slow_start"
		}
		recs[i] = r
		weightSum += r.Weight
		rpsSum += r.Inputs.RPS
	}
	start := time.Now()
	for _, r := range recs {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		_, err = p.js.PublishAsync("$KV."+streams.BucketWeights+"."+r.Key(), b)
		require.NoError(t, err)
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("WEIGHTS writes not acknowledged within a minute")
	}
	t.Logf("wrote %d WEIGHTS records in %s", n, time.Since(start).Round(time.Millisecond))

	eventually(t, func() error {
		var pg balancerPage
		p.get(t, "balancer?service="+svc+"&limit=1", &pg)
		if pg.Matched != n {
			return fmt.Errorf("%d of %d instances of %s followed", pg.Matched, n, svc)
		}
		// The balancer writes the platform's own instances' weights at
		// its own pace; the whole table below counts them.
		if pg.Total <= n {
			return fmt.Errorf("%d instances in all: the balancer has not written the platform's own yet", pg.Total)
		}
		return nil
	})

	t.Run("the whole table answers, with its totals", func(t *testing.T) {
		var pg balancerPage
		start := time.Now()
		p.get(t, "balancer", &pg)
		t.Logf("first page of %d instances in %s", pg.Total, time.Since(start).Round(100*time.Microsecond))
		require.Greater(t, pg.Total, n, "the bulk instances and the platform's own")
		require.Equal(t, pg.Total, pg.Matched)
		require.GreaterOrEqual(t, pg.Services, 2)
		require.Len(t, pg.Instances, 100, "default limit")
		require.GreaterOrEqual(t, pg.Counts[balancer.ReasonBlackout], n/5)
		require.GreaterOrEqual(t, pg.Counts[balancer.ReasonPolicy], n-n/5)
		sum := 0
		for _, c := range pg.Counts {
			sum += c
		}
		require.Equal(t, pg.Total, sum, "counts by reason add up to the total")
	})

	// want is the bulk records ordered as the API should: by field, ties
	// by key, the whole order reversed for desc.
	want := func(by func(a, b balancer.Record) int, desc bool) []balancer.Record {
		out := slices.Clone(recs)
		slices.SortFunc(out, func(a, b balancer.Record) int {
			c := cmp.Or(by(a, b), strings.Compare(a.Key(), b.Key()))
			if desc {
				return -c
			}
			return c
		})
		return out
	}
	for _, tc := range []struct {
		name, query string
		want        []balancer.Record
	}{
		{"by key", "", want(func(a, b balancer.Record) int { return 0 }, false)},
		{"by weight, heaviest first", "&sort=weight&order=desc", want(func(a, b balancer.Record) int { return cmp.Compare(a.Weight, b.Weight) }, true)},
		{"by routed share, largest first", "&sort=served_share&order=desc", want(func(a, b balancer.Record) int { return cmp.Compare(a.Inputs.RPS, b.Inputs.RPS) }, true)},
		{"by weight share", "&sort=weight_share", want(func(a, b balancer.Record) int { return cmp.Compare(a.Weight, b.Weight) }, false)},
		{"by instance, descending", "&sort=instance&order=desc", want(func(a, b balancer.Record) int { return strings.Compare(a.Instance, b.Instance) }, true)},
		{"by target", "&sort=target", want(func(a, b balancer.Record) int { return cmp.Compare(a.Target, b.Target) }, false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for offset := 0; offset < n; offset += 1000 {
				var pg balancerPage
				p.get(t, fmt.Sprintf("balancer?service=%s&limit=1000&offset=%d%s", svc, offset, tc.query), &pg)
				require.Equal(t, n, pg.Matched)
				require.Len(t, pg.Instances, 1000)
				for i, in := range pg.Instances {
					w := tc.want[offset+i]
					if in.Key() != w.Key() || in.Weight != w.Weight || in.Reason != w.Reason || in.Inputs != w.Inputs {
						t.Fatalf("row %d: %s weight %v, want %s weight %v", offset+i, in.Key(), in.Weight, w.Key(), w.Weight)
					}
					require.InDelta(t, w.Weight/weightSum, in.WeightShare, 1e-12, "%s weight share", in.Key())
					require.InDelta(t, w.Inputs.RPS/rpsSum, in.ServedShare, 1e-12, "%s served share", in.Key())
				}
			}
		})
	}

	t.Run("the last page is short, past it is empty", func(t *testing.T) {
		var pg balancerPage
		p.get(t, "balancer?service="+svc+"&sort=weight&order=desc&offset=2950", &pg)
		require.Len(t, pg.Instances, 50)
		p.get(t, "balancer?service="+svc+"&offset=3000", &pg)
		require.Equal(t, n, pg.Matched)
		require.Empty(t, pg.Instances)
	})

	t.Run("filters", func(t *testing.T) {
		var pg balancerPage
		p.get(t, "balancer?q=bulk.i12&limit=1000", &pg)
		require.Equal(t, 100, pg.Matched, "text: i1200..i1299")
		for _, in := range pg.Instances {
			require.True(t, strings.HasPrefix(in.Instance, "i12"), in.Key())
		}
		p.get(t, "balancer?service="+svc+"&reason=blackout&limit=1000", &pg)
		require.Equal(t, n/5, pg.Matched, "every fifth instance is in blackout")
		for _, in := range pg.Instances {
			require.Equal(t, "blackout+slow_start", in.Reason, in.Key())
		}
		p.get(t, "balancer?service=nosuch", &pg)
		require.Zero(t, pg.Matched)
		require.NotNil(t, pg.Instances)
	})

	t.Run("a changed and a deleted key show at once", func(t *testing.T) {
		kv, err := p.js.KeyValue(ctx, streams.BucketWeights)
		require.NoError(t, err)
		top := recs[0]
		top.Weight = 500
		b, _ := json.Marshal(top)
		_, err = kv.Put(ctx, top.Key(), b)
		require.NoError(t, err)
		require.NoError(t, kv.Delete(ctx, recs[1].Key()))
		eventually(t, func() error {
			var pg balancerPage
			p.get(t, "balancer?service="+svc+"&sort=weight&order=desc&limit=1", &pg)
			if pg.Matched != n-1 || len(pg.Instances) != 1 || pg.Instances[0].Key() != top.Key() {
				return fmt.Errorf("matched %d, first %+v: want %d with %s first", pg.Matched, pg.Instances, n-1, top.Key())
			}
			return nil
		})
	})

	t.Run("bad parameters are a 400", func(t *testing.T) {
		for _, path := range []string{
			"balancer?sort=secret", "balancer?order=up", "balancer?limit=0", "balancer?limit=1001", "balancer?limit=x",
			"balancer?offset=-1", "balancer?offset=10000001", "balancer?service=a.b", "balancer?service=a%20b",
			"balancer?reason=maybe", "balancer?reason=blackout%2Bslow_start", "balancer?q=" + strings.Repeat("q", 300),
		} {
			p.requireBadRequest(t, path)
		}
	})
}
