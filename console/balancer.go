package console

import (
	"cmp"
	"context"
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
		rec, err := balancer.DecodeRecord(e.Key(), e.Value())
		if err != nil {
			return
		}
		v.set(e.Key(), func(*balancer.Record, bool) *balancer.Record { return &rec })
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

// serviceSums are a service's totals over all its instances.
type serviceSums struct{ weight, rps float64 }

// instance is a WEIGHTS record that passed a page's filters, with its
// service's totals: what a page sorts, 16 bytes a row.
type instance struct {
	rec *balancer.Record
	svc *serviceSums
}

func (i instance) weightShare() float64 {
	if i.svc.weight <= 0 {
		return 0
	}
	return i.rec.Weight / i.svc.weight
}

func (i instance) servedShare() float64 {
	if i.svc.rps <= 0 {
		return 0
	}
	return i.rec.Inputs.RPS / i.svc.rps
}

// weightSorts are the sort keys of /balancer, the default first.
var weightSorts = []sortKey[instance]{
	{"key", func(a, b instance) int { return 0 }},
	{"service", func(a, b instance) int { return strings.Compare(a.rec.Service, b.rec.Service) }},
	{"instance", func(a, b instance) int { return strings.Compare(a.rec.Instance, b.rec.Instance) }},
	{"weight", func(a, b instance) int { return cmp.Compare(a.rec.Weight, b.rec.Weight) }},
	{"target", func(a, b instance) int { return cmp.Compare(a.rec.Target, b.rec.Target) }},
	{"reason", func(a, b instance) int { return strings.Compare(a.rec.Reason, b.rec.Reason) }},
	{"state", func(a, b instance) int {
		return strings.Compare(string(a.rec.Inputs.State), string(b.rec.Inputs.State))
	}},
	{"latency_ms", func(a, b instance) int { return cmp.Compare(a.rec.Inputs.LatencyMS, b.rec.Inputs.LatencyMS) }},
	{"p99_ms", func(a, b instance) int { return cmp.Compare(a.rec.Inputs.P99MS, b.rec.Inputs.P99MS) }},
	{"error_rate", func(a, b instance) int { return cmp.Compare(a.rec.Inputs.ErrorRate, b.rec.Inputs.ErrorRate) }},
	{"cpu", func(a, b instance) int { return cmp.Compare(a.rec.Inputs.CPU, b.rec.Inputs.CPU) }},
	{"in_flight", func(a, b instance) int { return cmp.Compare(a.rec.Inputs.InFlight, b.rec.Inputs.InFlight) }},
	{"rps", func(a, b instance) int { return cmp.Compare(a.rec.Inputs.RPS, b.rec.Inputs.RPS) }},
	{"failure_probability", func(a, b instance) int {
		return cmp.Compare(a.rec.Inputs.FailureProbability, b.rec.Inputs.FailureProbability)
	}},
	{"weight_share", func(a, b instance) int { return cmp.Compare(a.weightShare(), b.weightShare()) }},
	{"served_share", func(a, b instance) int { return cmp.Compare(a.servedShare(), b.servedShare()) }},
	{"last_report", func(a, b instance) int { return a.rec.LastReport.Compare(b.rec.LastReport) }},
}

// byWeightKey orders instances by <service>.<instance> without building it.
func byWeightKey(a, b instance) int {
	return cmp.Or(strings.Compare(a.rec.Service, b.rec.Service), strings.Compare(a.rec.Instance, b.rec.Instance))
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
	// A service's totals are over all its instances, whatever the filter.
	totals := map[string]*serviceSums{}
	counts := make([]int, len(balancerReasons))
	other := map[string]int{} // rules this console does not know
	v.mu.RLock()
	total := len(v.all)
	matched := make([]instance, 0, len(v.all))
	for key, rec := range v.all {
		rule := reasonRule(rec.Reason)
		if i := slices.Index(balancerReasons, rule); i >= 0 {
			counts[i]++
		} else {
			other[rule]++
		}
		s := totals[rec.Service]
		if s == nil {
			s = &serviceSums{}
			totals[rec.Service] = s
		}
		s.weight += rec.Weight
		s.rps += rec.Inputs.RPS
		if (svc == "" || rec.Service == svc) && (reason == "" || rule == reason) && (text == "" || strings.Contains(key, text)) {
			matched = append(matched, instance{rec, s})
		}
	}
	v.mu.RUnlock()
	page := balancerPage{Total: total, Matched: len(matched), Services: len(totals), Counts: other}
	for i, rule := range balancerReasons {
		page.Counts[rule] = counts[i]
	}
	// Every service's totals are complete now: the shares can be read.
	shown := pq.page(matched, byWeightKey)
	page.Instances = make([]weightRow, len(shown))
	for i, in := range shown {
		page.Instances[i] = weightRow{Record: in.rec, WeightShare: in.weightShare(), ServedShare: in.servedShare()}
	}
	return page, nil
}
