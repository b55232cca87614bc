package console

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/balancer"
)

// maxBalancerPage bounds a balancer page.
const maxBalancerPage = 1000

// balancerReasons are the rules a weight comes from (a record's reason up
// to its first "+"), counted on every page and accepted by ?reason=.
var balancerReasons = []string{balancer.ReasonPolicy, balancer.ReasonBlackout, balancer.ReasonExpired, balancer.ReasonUnhealthy, balancer.ReasonLeaving}

// putWeight keeps a WEIGHTS record in the view. Each put stores a new
// record and never changes a stored one, so a page may hold pointers to
// them after it lets go of the lock.
func putWeight(v *kvView[*balancer.Record]) func(e jetstream.KeyValueEntry) {
	return func(e jetstream.KeyValueEntry) {
		r := new(balancer.Record)
		if json.Unmarshal(e.Value(), r) != nil {
			return
		}
		v.set(e.Key(), func(*balancer.Record, bool) *balancer.Record { return r })
	}
}

// weightRow is one instance of GET /balancer: its WEIGHTS record and its
// shares of its service.
type weightRow struct {
	*balancer.Record
	// WeightShare is the weight over the service's total: the share
	// routing aims at.
	WeightShare float64 `json:"weight_share"`
	// ServedShare is the request rate over the service's total: the
	// share the instance was routed last interval.
	ServedShare float64 `json:"served_share"`
}

// balancerPage is GET /balancer.
type balancerPage struct {
	Total     int            `json:"total"`
	Matched   int            `json:"matched"`
	Services  int            `json:"services"`
	Counts    map[string]int `json:"counts"`
	Instances []weightRow    `json:"instances"`
}

// weightSorts are the sort keys of /balancer, the default first.
var weightSorts = []sortKey[*weightRow]{
	{"key", func(a, b *weightRow) int { return 0 }},
	{"service", func(a, b *weightRow) int { return strings.Compare(a.Service, b.Service) }},
	{"instance", func(a, b *weightRow) int { return strings.Compare(a.Instance, b.Instance) }},
	{"weight", func(a, b *weightRow) int { return cmp.Compare(a.Weight, b.Weight) }},
	{"target", func(a, b *weightRow) int { return cmp.Compare(a.Target, b.Target) }},
	{"reason", func(a, b *weightRow) int { return strings.Compare(a.Reason, b.Reason) }},
	{"state", func(a, b *weightRow) int { return strings.Compare(string(a.Inputs.State), string(b.Inputs.State)) }},
	{"latency_ms", func(a, b *weightRow) int { return cmp.Compare(a.Inputs.LatencyMS, b.Inputs.LatencyMS) }},
	{"p99_ms", func(a, b *weightRow) int { return cmp.Compare(a.Inputs.P99MS, b.Inputs.P99MS) }},
	{"error_rate", func(a, b *weightRow) int { return cmp.Compare(a.Inputs.ErrorRate, b.Inputs.ErrorRate) }},
	{"cpu", func(a, b *weightRow) int { return cmp.Compare(a.Inputs.CPU, b.Inputs.CPU) }},
	{"in_flight", func(a, b *weightRow) int { return cmp.Compare(a.Inputs.InFlight, b.Inputs.InFlight) }},
	{"rps", func(a, b *weightRow) int { return cmp.Compare(a.Inputs.RPS, b.Inputs.RPS) }},
	{"failure_probability", func(a, b *weightRow) int {
		return cmp.Compare(a.Inputs.FailureProbability, b.Inputs.FailureProbability)
	}},
	{"weight_share", func(a, b *weightRow) int { return cmp.Compare(a.WeightShare, b.WeightShare) }},
	{"served_share", func(a, b *weightRow) int { return cmp.Compare(a.ServedShare, b.ServedShare) }},
	{"last_report", func(a, b *weightRow) int { return a.LastReport.Compare(b.LastReport) }},
}

// byWeightKey orders rows by <service>.<instance> without building it.
func byWeightKey(a, b *weightRow) int {
	return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Instance, b.Instance))
}

// reasonRule is the rule part of a reason: "blackout" of
// "blackout+slow_start".
func reasonRule(reason string) string {
	rule, _, _ := strings.Cut(reason, "+")
	return rule
}

func (c *Console) balancerAPI(_ context.Context, r *http.Request, _ *session) (any, error) {
	q := r.URL.Query()
	svc := q.Get("service")
	if svc != "" && !membership.ValidToken(svc) {
		return nil, badRequest("service %q is not a valid service name", svc)
	}
	reason := q.Get("reason")
	if reason != "" && !slices.Contains(balancerReasons, reason) {
		return nil, badRequest("reason %q: want one of %s", reason, strings.Join(balancerReasons, ", "))
	}
	text, err := strParam(r, "q", maxParam)
	if err != nil {
		return nil, err
	}
	pq, err := readPage(r, weightSorts, maxBalancerPage)
	if err != nil {
		return nil, err
	}
	v := c.weights
	if err := v.ready(); err != nil {
		return nil, err
	}
	page := balancerPage{Counts: make(map[string]int, len(balancerReasons))}
	for _, rule := range balancerReasons {
		page.Counts[rule] = 0
	}
	// A service's totals are over all its instances, whatever the filter.
	type sums struct{ weight, rps float64 }
	totals := map[string]*sums{}
	v.mu.RLock()
	page.Total = len(v.all)
	rows := make([]weightRow, 0, len(v.all))
	for key, rec := range v.all {
		rule := reasonRule(rec.Reason)
		page.Counts[rule]++
		s := totals[rec.Service]
		if s == nil {
			s = &sums{}
			totals[rec.Service] = s
		}
		s.weight += rec.Weight
		s.rps += rec.Inputs.RPS
		if (svc == "" || rec.Service == svc) && (reason == "" || rule == reason) && (text == "" || strings.Contains(key, text)) {
			rows = append(rows, weightRow{Record: rec})
		}
	}
	v.mu.RUnlock()
	page.Services, page.Matched = len(totals), len(rows)
	ptrs := make([]*weightRow, len(rows))
	for i := range rows {
		in := &rows[i]
		s := totals[in.Service]
		if s.weight > 0 {
			in.WeightShare = in.Weight / s.weight
		}
		if s.rps > 0 {
			in.ServedShare = in.Inputs.RPS / s.rps
		}
		ptrs[i] = in
	}
	shown := pq.page(ptrs, byWeightKey)
	page.Instances = make([]weightRow, len(shown))
	for i, in := range shown {
		page.Instances[i] = *in
	}
	return page, nil
}
