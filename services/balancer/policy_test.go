package balancer

import (
	"testing"
	"time"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
)

func TestPolicyTargetDirections(t *testing.T) {
	p := DefaultPolicy()
	ok := Inputs{LatencyMS: 200, ErrorRate: 0.02, CPU: 0.6} // every input in its neutral band
	tests := []struct {
		name   string
		in     func(Inputs) Inputs
		median float64
		want   float64
	}{
		{"neutral", func(i Inputs) Inputs { return i }, 0, 100},
		{"fast latency", func(i Inputs) Inputs { i.LatencyMS = 50; return i }, 0, 120},
		{"slow latency", func(i Inputs) Inputs { i.LatencyMS = 600; return i }, 0, 70},
		{"slow against the service median", func(i Inputs) Inputs { i.LatencyMS = 20; return i }, 2, 70},
		{"fast like the service median", func(i Inputs) Inputs { i.LatencyMS = 2; return i }, 2, 120},
		{"few errors", func(i Inputs) Inputs { i.ErrorRate = 0; return i }, 0, 110},
		{"many errors", func(i Inputs) Inputs { i.ErrorRate = 0.5; return i }, 0, 80},
		{"idle cpu", func(i Inputs) Inputs { i.CPU = 0.1; return i }, 0, 115},
		{"busy cpu", func(i Inputs) Inputs { i.CPU = 0.95; return i }, 0, 75},
		{"all good", func(Inputs) Inputs { return Inputs{LatencyMS: 1} }, 0, 145},
		{"all bad", func(Inputs) Inputs { return Inputs{LatencyMS: 900, ErrorRate: 1, CPU: 1} }, 0, 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Target(tt.in(ok), tt.median); got != tt.want {
				t.Errorf("Target = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPolicyClamp(t *testing.T) {
	p := DefaultPolicy()
	p.CPU.Penalty = 500
	if got := p.Target(Inputs{LatencyMS: 200, CPU: 1, ErrorRate: 0.02}, 0); got != p.Min {
		t.Errorf("Target with a huge penalty = %v, want the minimum %v", got, p.Min)
	}
	p = DefaultPolicy()
	p.CPU.Bonus = 500
	if got := p.Target(Inputs{LatencyMS: 200, ErrorRate: 0.02}, 0); got != p.Max {
		t.Errorf("Target with a huge bonus = %v, want the maximum %v", got, p.Max)
	}
}

// policyNoRamp is the default policy without blackout and slow start, so
// weights follow reports from the first one.
func policyNoRamp() Policy {
	p := DefaultPolicy()
	p.Blackout, p.SlowStart = 0, 0
	return p
}

func weightOf(t *testing.T, recs []Record, inst string) Record {
	t.Helper()
	for _, r := range recs {
		if r.Instance == inst {
			return r
		}
	}
	t.Fatalf("no record for %s in %v", inst, recs)
	return Record{}
}

func TestTableEWMA(t *testing.T) {
	tab, err := NewTable(policyNoRamp())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	good := service.Load{LatencyMS: 1, RPS: 10}
	bad := service.Load{LatencyMS: 900, ErrorRate: 1, CPU: 1, RPS: 10}
	tab.ObserveLoad("s", "a", good, t0)
	recs, _ := tab.Tick(t0)
	if got := weightOf(t, recs, "a").Weight; got != 145 {
		t.Fatalf("first weight = %v, want the target 145", got)
	}
	// Each report moves the weight 30% of the way to the new target.
	want := []float64{0.7*145 + 0.3*25}
	want = append(want, 0.7*want[0]+0.3*25)
	for i, w := range want {
		now := t0.Add(time.Duration(i+1) * time.Second)
		tab.ObserveLoad("s", "a", bad, now)
		recs, _ = tab.Tick(now)
		if got := weightOf(t, recs, "a").Weight; abs(got-w) > 0.01 {
			t.Errorf("weight after %d bad reports = %v, want %v", i+1, got, w)
		}
	}
	// A tick without a new report leaves it alone.
	before := weightOf(t, recs, "a").Weight
	recs, _ = tab.Tick(t0.Add(3 * time.Second))
	if got := weightOf(t, recs, "a").Weight; got != before {
		t.Errorf("weight without a report = %v, want unchanged %v", got, before)
	}
}

func TestTableLifecycle(t *testing.T) {
	p := DefaultPolicy()
	p.SlowStart = 0
	t0 := time.Unix(1000, 0)
	good := service.Load{LatencyMS: 1, RPS: 10}
	slow := service.Load{LatencyMS: 30, RPS: 10}
	type step struct {
		at     time.Duration
		report bool
		load   service.Load
		member membership.State
		fp     float64
		// want for instance "new"
		weight float64
		reason string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"blackout gives the mean, then its own weight", []step{
			{at: 0, report: true, load: slow, weight: 145, reason: ReasonBlackout},
			{at: 5 * time.Second, report: true, load: slow, weight: 145, reason: ReasonBlackout},
			{at: 10 * time.Second, report: true, load: slow, weight: 95, reason: ReasonPolicy},
		}},
		{"expiry when reports stop", []step{
			{at: 0, report: true, load: good, weight: 145, reason: ReasonBlackout},
			{at: 10 * time.Second, report: true, load: slow, weight: 95, reason: ReasonPolicy},
			{at: 19 * time.Second, weight: 95, reason: ReasonPolicy},
			{at: 20 * time.Second, weight: 145, reason: ReasonExpired},
		}},
		{"suspect, dead and left get 0 at once", []step{
			{at: 0, report: true, load: good, weight: 145, reason: ReasonBlackout},
			{at: 10 * time.Second, report: true, load: good, weight: 145, reason: ReasonPolicy},
			{at: 11 * time.Second, member: membership.Suspect, weight: 0, reason: ReasonUnhealthy},
			{at: 12 * time.Second, member: membership.Alive, report: true, load: good, weight: 145, reason: ReasonPolicy},
			{at: 13 * time.Second, member: membership.Dead, weight: 0, reason: ReasonUnhealthy},
			{at: 14 * time.Second, member: membership.Left, weight: 0, reason: ReasonUnhealthy},
		}},
		{"a MEMBERS record before the first heartbeat is kept", []step{
			{at: 0, member: membership.Suspect, weight: 0, reason: ReasonUnhealthy},
			{at: time.Second, report: true, load: good, weight: 0, reason: ReasonUnhealthy},
		}},
		{"a leaving heartbeat gets 0", []step{
			{at: 0, report: true, load: good, weight: 145, reason: ReasonBlackout},
			{at: 10 * time.Second, report: true, load: service.Load{Leaving: true}, weight: 0, reason: ReasonLeaving},
		}},
		{"back from the dead starts a new blackout", []step{
			{at: 0, report: true, load: good, weight: 145, reason: ReasonBlackout},
			{at: 10 * time.Second, report: true, load: slow, weight: 95, reason: ReasonPolicy},
			{at: 11 * time.Second, member: membership.Dead, weight: 0, reason: ReasonUnhealthy},
			{at: 12 * time.Second, member: membership.Alive, report: true, load: slow, weight: 145, reason: ReasonBlackout},
		}},
		{"failure probability lowers the weight", []step{
			{at: 0, report: true, load: good, weight: 145, reason: ReasonBlackout},
			{at: 10 * time.Second, report: true, load: good, member: membership.Alive, fp: 0.5, weight: 72.5, reason: ReasonPolicy + "+failure_probability"},
			{at: 11 * time.Second, report: true, load: good, member: membership.Alive, fp: 0.1, weight: 145, reason: ReasonPolicy},
		}},
		{"forgotten after Forget", []step{
			{at: 0, report: true, load: good, weight: 145, reason: ReasonBlackout},
			{at: 10 * time.Second, report: true, load: good, weight: 145, reason: ReasonPolicy},
			{at: 80 * time.Second, weight: -1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := NewTable(p)
			if err != nil {
				t.Fatal(err)
			}
			// A settled instance of the same service gives the mean (145).
			tab.ObserveLoad("s", "old", good, t0.Add(-time.Hour))
			tab.Tick(t0.Add(-time.Hour))
			for _, s := range tt.steps {
				now := t0.Add(s.at)
				tab.ObserveLoad("s", "old", good, now)
				if s.report {
					tab.ObserveLoad("s", "new", s.load, now)
				}
				if s.member != "" {
					tab.ObserveMember(membership.Member{Service: "s", Instance: "new", State: s.member, FailureProbability: s.fp}, now)
				}
				recs, forgotten := tab.Tick(now)
				if s.weight < 0 {
					if len(forgotten) != 1 || forgotten[0] != "s.new" {
						t.Errorf("at %v: forgotten = %v, want [s.new]", s.at, forgotten)
					}
					continue
				}
				r := weightOf(t, recs, "new")
				if abs(r.Weight-s.weight) > 0.01 || r.Reason != s.reason {
					t.Errorf("at %v: weight %v (%s), want %v (%s)", s.at, r.Weight, r.Reason, s.weight, s.reason)
				}
			}
		})
	}
}

func TestTableSlowStart(t *testing.T) {
	p := DefaultPolicy()
	p.Blackout = 0
	tab, err := NewTable(p)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	good := service.Load{LatencyMS: 1, RPS: 10}
	want := []float64{14.5, 72.5, 145}
	for i, at := range []time.Duration{0, 5 * time.Second, 10 * time.Second} {
		tab.ObserveLoad("s", "a", good, t0.Add(at))
		recs, _ := tab.Tick(t0.Add(at))
		if got := weightOf(t, recs, "a").Weight; abs(got-want[i]) > 0.01 {
			t.Errorf("weight at %v = %v, want %v", at, got, want[i])
		}
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
