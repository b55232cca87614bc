package console

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// seriesPoints is 15 minutes at one point a second.
const seriesPoints = 900

// The metrics the series are read from (services/replicator/metrics.go).
const (
	metricEventsIn   = "platform_replicator_events_in_total"
	metricDropped    = "platform_replicator_dropped_events_total"
	metricErrors     = "platform_replicator_errors_total"
	metricAckLatency = "platform_replicator_ack_latency_seconds"
)

// levels are the consistency levels the ack latency is shown for.
var levels = []string{"async", "quorum", "all"}

// counters are the cumulative figures of one sample.
type counters struct {
	at                time.Time
	in, dropped, errs float64
	ack               map[string]*dto.Histogram // by level
}

// point is one step of the series.
type point struct {
	at                int64 // unix ms
	in, dropped, errs float64
	p50, p99          [3]float64 // by levels; NaN: nothing acknowledged
}

// series is the last seriesPoints steps in a ring, each the difference
// of two samples of the process's registry.
type series struct {
	mu   sync.Mutex
	ring []point
	next int
	n    int
	last *counters
}

func newSeries(size int) *series { return &series{ring: make([]point, size)} }

// sample reads g and adds the step since the previous sample.
func (s *series) sample(g prometheus.Gatherer, now time.Time) {
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	cur := &counters{at: now, ack: map[string]*dto.Histogram{}}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricEventsIn:
			cur.in = sum(mf)
		case metricDropped:
			cur.dropped = sum(mf)
		case metricErrors:
			cur.errs = sum(mf)
		case metricAckLatency:
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "level" {
						cur.ack[l.GetValue()] = m.GetHistogram()
					}
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.last
	s.last = cur
	if prev == nil {
		return
	}
	secs := now.Sub(prev.at).Seconds()
	if secs <= 0 {
		return
	}
	p := point{at: now.UnixMilli(), in: perSecond(cur.in, prev.in, secs), dropped: perSecond(cur.dropped, prev.dropped, secs), errs: perSecond(cur.errs, prev.errs, secs)}
	for i, lvl := range levels {
		p.p50[i], p.p99[i] = math.NaN(), math.NaN()
		if h := cur.ack[lvl]; h != nil {
			d := delta(h, prev.ack[lvl])
			p.p50[i], p.p99[i] = quantile(0.5, d)*1000, quantile(0.99, d)*1000
		}
	}
	s.ring[s.next] = p
	s.next = (s.next + 1) % len(s.ring)
	s.n = min(s.n+1, len(s.ring))
}

func sum(mf *dto.MetricFamily) float64 {
	var t float64
	for _, m := range mf.GetMetric() {
		t += m.GetCounter().GetValue()
	}
	return t
}

// perSecond is the per-second increase; a counter that went down (a restart
// of what counts) counts from zero.
func perSecond(cur, prev, secs float64) float64 {
	if cur < prev {
		return cur / secs
	}
	return (cur - prev) / secs
}

// bucket is a histogram bucket's upper bound and the observations in it
// (not cumulative) during a step.
type bucket struct {
	upper float64
	count float64
}

// delta returns the observations of cur not in prev, per bucket.
func delta(cur, prev *dto.Histogram) []bucket {
	var out []bucket
	var below, belowPrev float64
	for i, b := range cur.GetBucket() {
		c := float64(b.GetCumulativeCount())
		var pc float64
		if prev != nil && i < len(prev.GetBucket()) {
			pc = float64(prev.GetBucket()[i].GetCumulativeCount())
		}
		out = append(out, bucket{upper: b.GetUpperBound(), count: math.Max(0, (c-below)-(pc-belowPrev))})
		below, belowPrev = c, pc
	}
	total := float64(cur.GetSampleCount())
	if prev != nil {
		total -= float64(prev.GetSampleCount())
	}
	if inf := total - sumCounts(out); inf > 0 {
		out = append(out, bucket{upper: math.Inf(1), count: inf})
	}
	return out
}

func sumCounts(bs []bucket) float64 {
	var t float64
	for _, b := range bs {
		t += b.count
	}
	return t
}

// quantile estimates the q-quantile of the step's observations as
// Prometheus's histogram_quantile does: linearly within the bucket that
// holds it; the last finite bound when it falls in +Inf; NaN without
// observations.
func quantile(q float64, bs []bucket) float64 {
	total := sumCounts(bs)
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	var seen, lower float64
	for _, b := range bs {
		if seen+b.count >= rank && b.count > 0 {
			if math.IsInf(b.upper, 1) {
				return lower
			}
			return lower + (b.upper-lower)*(rank-seen)/b.count
		}
		seen += b.count
		if !math.IsInf(b.upper, 1) {
			lower = b.upper
		}
	}
	return lower
}

// nullable is a float series whose NaNs are JSON nulls.
type nullable []float64

func (n nullable) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 8*len(n)+2)
	b = append(b, '[')
	for i, v := range n {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, math.Round(v*1000)/1000, 'f', -1, 64)
	}
	return append(b, ']'), nil
}

// percentiles are one level's ack latency percentiles, in ms.
type percentiles struct {
	P50 nullable `json:"p50"`
	P99 nullable `json:"p99"`
}

// seriesView is GET /series.
type seriesView struct {
	StepMS  int                    `json:"step_ms"`
	Times   []int64                `json:"times"`
	Ingest  nullable               `json:"ingest_per_s"`
	Dropped nullable               `json:"dropped_per_s"`
	Errors  nullable               `json:"errors_per_s"`
	Ack     map[string]percentiles `json:"ack_ms"`
}

func (c *Console) seriesAPI(_ context.Context, r *http.Request, _ *session) (any, error) {
	since, err := intParam(r, "since", 0, 0, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	return c.series.view(since), nil
}

// view returns the points after since (unix ms), oldest first.
func (s *series) view(since int64) seriesView {
	v := seriesView{StepMS: 1000, Times: []int64{}, Ingest: nullable{}, Dropped: nullable{}, Errors: nullable{}, Ack: map[string]percentiles{}}
	for _, l := range levels {
		v.Ack[l] = percentiles{P50: nullable{}, P99: nullable{}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start := (s.next - s.n + len(s.ring)) % len(s.ring)
	for i := range s.n {
		p := s.ring[(start+i)%len(s.ring)]
		if p.at <= since {
			continue
		}
		v.Times = append(v.Times, p.at)
		v.Ingest = append(v.Ingest, p.in)
		v.Dropped = append(v.Dropped, p.dropped)
		v.Errors = append(v.Errors, p.errs)
		for j, l := range levels {
			a := v.Ack[l]
			a.P50, a.P99 = append(a.P50, p.p50[j]), append(a.P99, p.p99[j])
			v.Ack[l] = a
		}
	}
	return v
}
