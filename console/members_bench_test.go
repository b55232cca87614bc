package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/platform/platform/membership"
)

// BenchmarkMembersPage10k is the first page of a members table of
// 10,000 instances sorted by phi, as the page asks for it.
func BenchmarkMembersPage10k(b *testing.B) {
	c, err := New(Options{Ready: func(context.Context) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	synced := make(chan struct{})
	close(synced)
	v := &memberView{synced: synced, all: map[string]*tracked{}}
	now := time.Now()
	states := []membership.State{membership.Alive, membership.Alive, membership.Alive, membership.Suspect, membership.Dead}
	for i := range 10000 {
		m := membership.Member{Service: fmt.Sprintf("svc%d", i%20), Instance: fmt.Sprintf("inst%05d", i), State: states[i%len(states)],
			Phi: float64(i%997) / 10, LastSeen: now.Add(-time.Duration(i) * time.Millisecond), FailureProbability: float64(i%100) / 100}
		v.all[m.Key()] = &tracked{m: m}
	}
	c.members = v
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
