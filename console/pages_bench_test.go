package console

import (
	"context"
	"fmt"
	"net/http/httptest"
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

// BenchmarkBalancerPage10k is the first page of a balancer table of
// 10,000 instances (20 services) sorted by weight, heaviest first, and by
// the share each was routed, as the page asks for them.
func BenchmarkBalancerPage10k(b *testing.B) {
	c := syncedConsole(b)
	now := time.Now()
	reasons := []string{balancer.ReasonPolicy, balancer.ReasonPolicy, balancer.ReasonPolicy, balancer.ReasonBlackout + "+slow_start", balancer.ReasonUnhealthy}
	for i := range 10000 {
		r := &balancer.Record{Service: fmt.Sprintf("svc%d", i%20), Instance: fmt.Sprintf("inst%05d", i),
			Weight: float64(10 + i%191), Target: float64(10 + i%193), Reason: reasons[i%len(reasons)],
			Inputs:    balancer.Inputs{LatencyMS: float64(i%97) / 10, RPS: float64(i % 503), State: membership.Alive, FailureProbability: float64(i%100) / 100},
			FirstSeen: now.Add(-time.Hour), LastReport: now.Add(-time.Duration(i) * time.Millisecond)}
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
