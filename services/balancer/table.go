package balancer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// Inputs are what an instance's weight is computed from; they are stored
// next to the weight in WEIGHTS so a record explains itself.
type Inputs struct {
	// LatencyMS is the mean request latency of the last heartbeat, or,
	// when the heartbeat saw no request, the mean processing time from
	// $SRV.STATS since the previous poll.
	LatencyMS float64 `json:"latency_ms"`
	// P99MS is the heartbeat's 99th percentile latency.
	P99MS float64 `json:"p99_ms"`
	// ErrorRate is the share of failed requests (heartbeat, else stats).
	ErrorRate float64 `json:"error_rate"`
	// CPU is the process's share of the machine's CPU.
	CPU float64 `json:"cpu"`
	// InFlight is the number of requests being handled.
	InFlight int64 `json:"in_flight"`
	// RPS is the request rate of the last heartbeat interval.
	RPS float64 `json:"rps"`
	// Requests and Errors are $SRV.STATS totals over all endpoints.
	Requests int64 `json:"stats_requests"`
	// Errors is the $SRV.STATS error total.
	Errors int64 `json:"stats_errors"`
	// State is the MEMBERS state ("" before the detector wrote one).
	State membership.State `json:"state,omitempty"`
	// FailureProbability is the detector's predicted failure probability.
	FailureProbability float64 `json:"failure_probability"`
	// MedianMS is the median latency of the service's instances.
	MedianMS float64 `json:"service_median_ms"`
}

// Reasons a weight has the value it has.
const (
	ReasonPolicy    = "policy"
	ReasonBlackout  = "blackout"
	ReasonExpired   = "expired"
	ReasonUnhealthy = "unhealthy"
	ReasonLeaving   = "leaving"
)

// Record is the value of WEIGHTS key <service>.<instance>.
type Record struct {
	// Service is the micro service name (platform-txn).
	Service string `json:"service"`
	// Instance is the micro instance id.
	Instance string `json:"instance"`
	// Weight is what routers use: 0 means send nothing.
	Weight float64 `json:"weight"`
	// Target is the policy's value for the latest inputs, before
	// smoothing, the failure probability and slow start.
	Target float64 `json:"target"`
	// Reason says which rule decided the weight: policy, blackout,
	// expired, unhealthy or leaving; "+failure_probability" and
	// "+slow_start" are appended when they lowered it.
	Reason string `json:"reason"`
	// Inputs are the figures behind Target.
	Inputs Inputs `json:"inputs"`
	// FirstSeen is when the balancer first heard of the instance.
	FirstSeen time.Time `json:"first_seen"`
	// LastReport is the time of the latest heartbeat or stats report.
	LastReport time.Time `json:"last_report"`
}

// Key returns the record's WEIGHTS key.
func (r Record) Key() string { return streams.MemberKey(r.Service, r.Instance) }

// ErrBadRecord is wrapped by DecodeRecord's errors.
var ErrBadRecord = errors.New("bad WEIGHTS record")

// DecodeRecord decodes the value of WEIGHTS key key: the one rule every
// reader of the bucket follows (routers, the console, admin status). It
// refuses, with an error wrapping ErrBadRecord, a value that is not a JSON
// record, one whose service and instance are not valid names making key,
// and one whose weight is negative. JSON spends no more memory on a
// length than the value's bytes carry.
func DecodeRecord(key string, value []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(value, &rec); err != nil {
		return Record{}, fmt.Errorf("%w under %q: %v", ErrBadRecord, key, err)
	}
	switch {
	case !streams.ValidMemberToken(rec.Service) || !streams.ValidMemberToken(rec.Instance) || rec.Key() != key:
		return Record{}, fmt.Errorf("%w under %q: service %q and instance %q do not name this key: delete the key, the balancer rewrites it",
			ErrBadRecord, key, rec.Service, rec.Instance)
	case rec.Weight < 0:
		return Record{}, fmt.Errorf("%w under %q: weight %v is negative: delete the key, the balancer rewrites it", ErrBadRecord, key, rec.Weight)
	}
	return rec, nil
}

// entry is one instance in the table.
type entry struct {
	rec      Record
	smoothed float64 // EWMA of targets; 0 until the first report after blackout
	fresh    bool    // a report arrived since the last tick
	leaving  bool
	// $SRV.STATS totals at the previous poll.
	statsReq, statsErr int64
	statsTime          time.Duration
}

// Table computes every instance's weight from its reports. It is safe for
// concurrent use; time is passed in, so tests drive it.
type Table struct {
	p  Policy
	mu sync.Mutex
	m  map[string]*entry
}

// NewTable returns an empty table with policy p.
func NewTable(p Policy) (*Table, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &Table{p: p, m: make(map[string]*entry)}, nil
}

func (t *Table) get(svc, inst string, now time.Time) *entry {
	k := streams.MemberKey(svc, inst)
	e := t.m[k]
	if e == nil {
		e = &entry{rec: Record{Service: svc, Instance: inst, FirstSeen: now}}
		t.m[k] = e
	}
	return e
}

// ObserveLoad records a heartbeat from instance inst of svc.
func (t *Table) ObserveLoad(svc, inst string, l service.Load, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(svc, inst, now)
	in := &e.rec.Inputs
	if l.RPS > 0 || l.LatencyMS > 0 {
		in.LatencyMS, in.P99MS, in.ErrorRate = l.LatencyMS, l.P99MS, l.ErrorRate
	}
	in.CPU, in.InFlight, in.RPS = l.CPU, l.InFlight, l.RPS
	e.rec.LastReport, e.fresh, e.leaving = now, true, l.Leaving
}

// ObserveStats records an instance's $SRV.STATS totals over all its
// endpoints. Between two polls they give the mean processing time and
// error rate, used when heartbeats carry no latency.
func (t *Table) ObserveStats(svc, inst string, requests, errs int64, processing time.Duration, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(svc, inst, now)
	in := &e.rec.Inputs
	dr := requests - e.statsReq
	if e.statsReq > 0 && dr > 0 && in.RPS == 0 {
		in.LatencyMS = float64((processing - e.statsTime).Microseconds()) / 1000 / float64(dr)
		in.ErrorRate = float64(errs-e.statsErr) / float64(dr)
	}
	e.statsReq, e.statsErr, e.statsTime = requests, errs, processing
	in.Requests, in.Errors = requests, errs
	e.rec.LastReport, e.fresh = now, true
}

// ObserveMember records the detector's MEMBERS record of an instance and
// reports whether its state changed. A state other than alive takes
// effect at the next Tick.
func (t *Table) ObserveMember(m membership.Member, now time.Time) (changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(m.Service, m.Instance, now)
	changed = e.rec.Inputs.State != m.State
	if e.rec.Inputs.State == membership.Dead || e.rec.Inputs.State == membership.Left {
		if m.State == membership.Alive {
			// Back from the dead: a new life, with a new blackout.
			*e = entry{rec: Record{Service: m.Service, Instance: m.Instance, FirstSeen: now, LastReport: e.rec.LastReport}}
		}
	}
	e.rec.Inputs.State = m.State
	e.rec.Inputs.FailureProbability = m.FailureProbability
	return changed
}

// Tick recomputes every weight at now. It returns every current record,
// sorted by key, and the keys forgotten since the last Tick.
func (t *Table) Tick(now time.Time) (records []Record, forgotten []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.p
	// Fresh latencies per service, sorted, for the median of the peers.
	lat := map[string][]float64{}
	for _, e := range t.m {
		if e.rec.Inputs.LatencyMS > 0 && now.Sub(e.rec.LastReport) < p.Expiry && healthy(e) {
			lat[e.rec.Service] = append(lat[e.rec.Service], e.rec.Inputs.LatencyMS)
		}
	}
	for _, v := range lat {
		slices.Sort(v)
	}
	for k, e := range t.m {
		// An entry made by a MEMBERS record (replayed at start, before
		// any heartbeat) is as old as when it was first seen.
		if last := cmp.Or(e.rec.LastReport, e.rec.FirstSeen); now.Sub(last) >= p.Forget {
			delete(t.m, k)
			forgotten = append(forgotten, k)
			continue
		}
		e.rec.Inputs.MedianMS = medianOfOthers(lat[e.rec.Service], e.rec.Inputs.LatencyMS)
		e.rec.Target = p.Target(e.rec.Inputs, e.rec.Inputs.MedianMS)
		if e.fresh && now.Sub(e.rec.FirstSeen) >= p.Blackout {
			e.smoothed = p.smooth(e.smoothed, e.rec.Target)
		}
		e.fresh = false
	}
	mean := map[string]float64{}
	count := map[string]int{}
	for _, e := range t.m {
		if e.smoothed > 0 && healthy(e) && now.Sub(e.rec.LastReport) < p.Expiry {
			mean[e.rec.Service] += e.smoothed
			count[e.rec.Service]++
		}
	}
	for s, n := range count {
		mean[s] /= float64(n)
	}
	// Sorted by key, each key built once (ten thousand instances make a
	// sort that builds keys in its comparisons the table's largest cost).
	records = make([]Record, 0, len(t.m))
	for _, k := range slices.Sorted(maps.Keys(t.m)) {
		e := t.m[k]
		t.decide(e, now, mean, count)
		records = append(records, e.rec)
	}
	slices.Sort(forgotten)
	return records, forgotten
}

// decide sets e's weight and reason at now.
func (t *Table) decide(e *entry, now time.Time, mean map[string]float64, count map[string]int) {
	p := t.p
	r := &e.rec
	switch {
	case e.leaving:
		r.Weight, r.Reason = 0, ReasonLeaving
		return
	case !healthy(e):
		r.Weight, r.Reason = 0, ReasonUnhealthy
		return
	}
	avg := p.Base
	if count[r.Service] > 0 {
		avg = mean[r.Service]
	}
	switch {
	case now.Sub(r.LastReport) >= p.Expiry:
		r.Weight, r.Reason = avg, ReasonExpired
	case now.Sub(r.FirstSeen) < p.Blackout || e.smoothed == 0:
		r.Weight, r.Reason = avg, ReasonBlackout
	default:
		r.Weight, r.Reason = e.smoothed, ReasonPolicy
	}
	if fp := r.Inputs.FailureProbability; fp > p.FailureProbability {
		r.Weight *= 1 - fp
		r.Reason += "+failure_probability"
	}
	if f := p.ramp(now.Sub(r.FirstSeen)); f < 1 {
		r.Weight *= f
		r.Reason += "+slow_start"
	}
	r.Weight = math.Round(clamp(r.Weight, p.Min, p.Max)*100) / 100
}

// healthy reports whether the detector lets the instance take requests.
func healthy(e *entry) bool {
	switch e.rec.Inputs.State {
	case membership.Suspect, membership.Dead, membership.Left:
		return false
	}
	return true
}

// medianOfOthers returns the median of sorted without one occurrence of
// own (all of sorted when own is not in it; 0 when nothing is left). An
// instance is compared with its peers: with two instances, a median that
// counted the slow one would always sit halfway to it.
func medianOfOthers(sorted []float64, own float64) float64 {
	skip := -1
	if i, found := slices.BinarySearch(sorted, own); found {
		skip = i
	}
	n := len(sorted)
	if skip >= 0 {
		n--
	}
	if n <= 0 {
		return 0
	}
	at := func(k int) float64 {
		if skip >= 0 && k >= skip {
			k++
		}
		return sorted[k]
	}
	return (at((n-1)/2) + at(n/2)) / 2
}
