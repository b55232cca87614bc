package console

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/balancer"
)

// syncedConsole returns a console whose views count as synced, for
// benchmarks that fill them by hand.
func syncedConsole(b *testing.B) *Console {
	c, err := New(Options{Ready: func(context.Context) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	synced := make(chan struct{})
	close(synced)
	c.members.synced, c.weights.synced = synced, synced
	return c
}

// BenchmarkMembersPage10k is the first page of a members table of
// 10,000 instances sorted by phi, as the page asks for it.
func BenchmarkMembersPage10k(b *testing.B) {
	c := syncedConsole(b)
	now := time.Now()
	states := []membership.State{membership.Alive, membership.Alive, membership.Alive, membership.Suspect, membership.Dead}
	for i := range 10000 {
		m := membership.Member{Service: fmt.Sprintf("svc%d", i%20), Instance: fmt.Sprintf("inst%05d", i), State: states[i%len(states)],
			Phi: float64(i%997) / 10, LastSeen: now.Add(-time.Duration(i) * time.Millisecond), FailureProbability: float64(i%100) / 100}
		c.members.all[m.Key()] = &tracked{m: m}
	}
	r := httptest.NewRequest("GET", "/console/api/members?sort=phi&order=desc&limit=100", nil)
	b.ReportAllocs()
	for b.Loop() {
		page, err := c.membersAPI(context.Background(), r, nil)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(page.(membersPage).Members); n != 100 {
			b.Fatalf("%d members", n)
		}
	}
}

// weightRecords10k are 10,000 WEIGHTS records of 20 services whose
// weights and rates repeat, as weights do (many sit at the same value).
func weightRecords10k() []*balancer.Record {
	now := time.Now()
	reasons := []string{balancer.ReasonPolicy, balancer.ReasonPolicy, balancer.ReasonPolicy, balancer.ReasonBlackout + "+slow_start", balancer.ReasonUnhealthy}
	out := make([]*balancer.Record, 10000)
	for i := range out {
		out[i] = &balancer.Record{Service: fmt.Sprintf("svc%d", i%20), Instance: fmt.Sprintf("inst%05d", i),
			Weight: float64(10 + i%191), Target: float64(10 + i%193), Reason: reasons[i%len(reasons)],
			Inputs:    balancer.Inputs{LatencyMS: float64(i%97) / 10, RPS: float64(i % 503), State: membership.Alive, FailureProbability: float64(i%100) / 100},
			FirstSeen: now.Add(-time.Hour), LastReport: now.Add(-time.Duration(i) * time.Millisecond)}
	}
	return out
}

// BenchmarkPageOrder10k orders 10,000 balancer instances by weight, heaviest
// first, for the first page of 100: "sort" sorts them all and slices
// (what the pages did), "select" is what page does.
func BenchmarkPageOrder10k(b *testing.B) {
	recs := weightRecords10k()
	sums := map[string]*serviceSums{}
	src := make([]instance, len(recs))
	for i, r := range recs {
		if sums[r.Service] == nil {
			sums[r.Service] = &serviceSums{}
		}
		sums[r.Service].weight += r.Weight
		src[i] = instance{r, sums[r.Service]}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(src), func(i, j int) { src[i], src[j] = src[j], src[i] })
	q := pageQuery[instance]{by: weightSorts[slices.IndexFunc(weightSorts, func(s sortKey[instance]) bool { return s.name == "weight" })], desc: true, limit: 100}
	list := make([]instance, len(src))
	var want []instance
	b.Run("sort", func(b *testing.B) {
		for b.Loop() {
			copy(list, src)
			slices.SortFunc(list, q.compare(byWeightKey))
			want = list[:q.limit]
		}
		want = slices.Clone(want)
	})
	b.Run("select", func(b *testing.B) {
		for b.Loop() {
			copy(list, src)
			if got := q.page(list, byWeightKey); !slices.Equal(got, want) {
				b.Fatal("select and sort disagree")
			}
		}
	})
}

// BenchmarkBalancerPage10k is the first page of a balancer table of
// 10,000 instances (20 services) sorted by weight, heaviest first, and by
// the share each was routed, as the page asks for them.
func BenchmarkBalancerPage10k(b *testing.B) {
	c := syncedConsole(b)
	for _, r := range weightRecords10k() {
		c.weights.all[r.Key()] = r
	}
	for _, sort := range []string{"weight", "served_share"} {
		b.Run(sort, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/console/api/balancer?sort="+sort+"&order=desc&limit=100", nil)
			b.ReportAllocs()
			for b.Loop() {
				page, err := c.balancerAPI(context.Background(), r, nil)
				if err != nil {
					b.Fatal(err)
				}
				if n := len(page.(balancerPage).Instances); n != 100 {
					b.Fatalf("%d instances", n)
				}
			}
		})
	}
}
