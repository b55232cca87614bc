package alerting

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
)

// Limits of what Signals keeps, so garbage cannot grow it without bound.
const (
	// MaxWindow is the longest window a rule may count over.
	MaxWindow = time.Hour
	// heartbeatStale is how long a silent instance's heartbeat series is
	// kept (instance death is the members signal's business).
	heartbeatStale = 5 * time.Minute
	maxTopics      = 10000
	maxSeries      = 100000
	maxTransitions = 100000
)

// Signals holds what rules evaluate over: heartbeat load per instance,
// the MEMBERS view, DETECTOR transitions, event counts per topic, stream
// and consumer state, and the process's own metrics. It is fed by the
// service's subscriptions and pollers and read at each evaluation. It is
// safe for concurrent use.
type Signals struct {
	mu          sync.Mutex
	hb          map[string]hbEntry
	members     map[string]membership.Member
	transitions []membership.Transition
	events      map[string][]secCount
	streams     []Series
	consumers   []Series
	metrics     []Series
	prevMetric  map[string]float64
	prevAt      time.Time
}

type hbEntry struct {
	service, instance string
	load              service.Load
	at                time.Time
}

type secCount struct {
	sec int64
	n   uint64
}

// NewSignals returns empty signals.
func NewSignals() *Signals {
	return &Signals{hb: map[string]hbEntry{}, members: map[string]membership.Member{},
		events: map[string][]secCount{}, prevMetric: map[string]float64{}}
}

// Heartbeat records one heartbeat of service/instance received at now.
func (s *Signals) Heartbeat(svc, instance string, l service.Load, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := svc + "." + instance
	if _, ok := s.hb[key]; !ok && len(s.hb) >= maxSeries {
		return
	}
	s.hb[key] = hbEntry{service: svc, instance: instance, load: l, at: now}
}

// Member records a MEMBERS record.
func (s *Signals) Member(m membership.Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.members[m.Key()]; !ok && len(s.members) >= maxSeries {
		return
	}
	s.members[m.Key()] = m
}

// ForgetMember drops a deleted MEMBERS key.
func (s *Signals) ForgetMember(key string) {
	s.mu.Lock()
	delete(s.members, key)
	s.mu.Unlock()
}

// Transition records a DETECTOR transition received at now (At is the
// detector's clock; the window is judged on ours).
func (s *Signals) Transition(t membership.Transition, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.At = now
	s.transitions = append(s.transitions, t)
	if len(s.transitions) > maxTransitions {
		s.transitions = slices.Delete(s.transitions, 0, len(s.transitions)-maxTransitions)
	}
}

// Events counts n events on topic received at now.
func (s *Signals) Events(topic string, n uint64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.events[topic]
	if !ok && len(s.events) >= maxTopics {
		return
	}
	sec := now.Unix()
	if len(cs) > 0 && cs[len(cs)-1].sec == sec {
		cs[len(cs)-1].n += n
	} else {
		cs = append(cs, secCount{sec, n})
	}
	s.events[topic] = cs
}

// Prune forgets what is older than any rule can look at.
func (s *Signals) Prune(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.hb {
		if now.Sub(e.at) > heartbeatStale {
			delete(s.hb, k)
		}
	}
	cut := now.Add(-MaxWindow).Unix()
	for topic, cs := range s.events {
		i := 0
		for i < len(cs) && cs[i].sec < cut {
			i++
		}
		if i == len(cs) {
			delete(s.events, topic)
		} else if i > 0 {
			s.events[topic] = slices.Clone(cs[i:])
		}
	}
	i := 0
	for i < len(s.transitions) && now.Sub(s.transitions[i].At) > MaxWindow {
		i++
	}
	s.transitions = slices.Delete(s.transitions, 0, i)
}

// Series returns the series of rule r's signal at now.
func (s *Signals) Series(r *Rule, now time.Time) []Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Over {
	case OverHeartbeats:
		out := make([]Series, 0, len(s.hb))
		envs := make([]heartbeatEnv, 0, len(s.hb))
		for _, e := range s.hb {
			l := e.load
			envs = append(envs, heartbeatEnv{Service: e.service, Instance: e.instance,
				CPU: l.CPU, Mem: l.Mem, LatencyMS: l.LatencyMS, P99MS: l.P99MS,
				ErrorRate: l.ErrorRate, RPS: l.RPS, InFlight: float64(l.InFlight),
				Leaving: l.Leaving, AgeS: now.Sub(e.at).Seconds()})
		}
		for i := range envs {
			out = append(out, envs[i].series())
		}
		return out
	case OverMembers:
		out := make([]Series, 0, len(s.members))
		for _, m := range s.members {
			out = append(out, Series{
				Labels: map[string]string{"service": m.Service, "instance": m.Instance},
				Fields: map[string]any{"state": string(m.State), "phi": m.Phi, "failure_probability": m.FailureProbability,
					"quality": m.Quality.String(), "silent_s": now.Sub(m.LastSeen).Seconds()},
			})
		}
		return out
	case OverTransitions:
		from := now.Add(-r.Window.Std())
		type agg struct {
			svc, inst string
			n         float64
			to        map[string]float64
			last      string
		}
		by := map[string]*agg{}
		for _, t := range s.transitions {
			if t.At.Before(from) {
				continue
			}
			a := by[t.Key()]
			if a == nil {
				a = &agg{svc: t.Service, inst: t.Instance, to: map[string]float64{}}
				by[t.Key()] = a
			}
			a.n++
			a.to[string(t.State)]++
			a.last = string(t.State)
		}
		out := make([]Series, 0, len(by))
		for _, a := range by {
			f := map[string]any{"count": a.n, "state": a.last}
			for _, st := range []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left} {
				f["to_"+string(st)] = a.to[string(st)]
			}
			out = append(out, Series{Labels: map[string]string{"service": a.svc, "instance": a.inst}, Fields: f})
		}
		return out
	case OverEvents:
		from := now.Add(-r.Window.Std()).Unix()
		out := make([]Series, 0, len(s.events))
		for topic, cs := range s.events {
			var n uint64
			for i := len(cs) - 1; i >= 0 && cs[i].sec > from; i-- {
				n += cs[i].n
			}
			out = append(out, Series{Labels: map[string]string{"topic": topic},
				Fields: map[string]any{"count": float64(n), "rate": float64(n) / r.Window.Std().Seconds()}})
		}
		return out
	case OverStreams:
		return slices.Clone(s.streams)
	case OverConsumers:
		return slices.Clone(s.consumers)
	case OverMetrics:
		var out []Series
		for _, m := range s.metrics {
			if m.Labels["__name__"] == r.Metric {
				out = append(out, m)
			}
		}
		return out
	}
	return nil
}

// PollStreams refreshes the stream and consumer series from JetStream.
func (s *Signals) PollStreams(ctx context.Context, js jetstream.JetStream) error {
	var streams, consumers []Series
	l := js.ListStreams(ctx)
	var infos []*jetstream.StreamInfo
	for si := range l.Info() {
		infos = append(infos, si)
	}
	if err := l.Err(); err != nil {
		return err
	}
	for _, si := range infos {
		leader, current := peers(si.Cluster)
		replicas := max(1, si.Config.Replicas)
		streams = append(streams, Series{
			Labels: map[string]string{"stream": si.Config.Name},
			Fields: map[string]any{"messages": float64(si.State.Msgs), "bytes": float64(si.State.Bytes),
				"consumers": float64(si.State.Consumers), "replicas": float64(replicas), "current": float64(current),
				"has_leader": leader != "" || si.Cluster == nil, "leader": leader,
				"quorum": si.Cluster == nil || current >= replicas/2+1},
		})
		if si.State.Consumers == 0 {
			continue
		}
		st, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			continue // gone since listed
		}
		cl := st.ListConsumers(ctx)
		for ci := range cl.Info() {
			cleader, _ := peers(ci.Cluster)
			consumers = append(consumers, Series{
				Labels: map[string]string{"stream": ci.Stream, "consumer": ci.Name},
				Fields: map[string]any{"pending": float64(ci.NumPending), "ack_pending": float64(ci.NumAckPending),
					"redelivered": float64(ci.NumRedelivered), "waiting": float64(ci.NumWaiting),
					"has_leader": cleader != "" || ci.Cluster == nil},
			})
		}
	}
	s.mu.Lock()
	s.streams, s.consumers = streams, consumers
	s.mu.Unlock()
	return nil
}

// peers returns a RAFT group's leader and how many of its members are
// current (the leader included).
func peers(c *jetstream.ClusterInfo) (leader string, current int) {
	if c == nil {
		return "", 1
	}
	if c.Leader != "" {
		current = 1
	}
	for _, p := range c.Replicas {
		if p.Current && !p.Offline {
			current++
		}
	}
	return c.Leader, current
}

// GatherMetrics refreshes the metric series from g at now: each counter,
// gauge or untyped sample becomes a series with value, delta (since the
// previous gather) and rate (per second).
func (s *Signals) GatherMetrics(g prometheus.Gatherer, now time.Time) error {
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	elapsed := now.Sub(s.prevAt).Seconds()
	next := make(map[string]float64, len(s.prevMetric))
	var out []Series
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var v float64
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			lbls := map[string]string{"__name__": mf.GetName()}
			for _, lp := range m.GetLabel() {
				lbls[lp.GetName()] = lp.GetValue()
			}
			key := seriesKey(lbls)
			next[key] = v
			delta, rate := 0.0, 0.0
			if p, ok := s.prevMetric[key]; ok && !s.prevAt.IsZero() {
				delta = v - p
				if elapsed > 0 {
					rate = delta / elapsed
				}
			}
			out = append(out, Series{Labels: lbls, Fields: map[string]any{"value": v, "delta": delta, "rate": rate}})
		}
	}
	s.metrics, s.prevMetric, s.prevAt = out, next, now
	return nil
}

func seriesKey(lbls map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(lbls)) {
		b.WriteString(k + "=" + strconv.Quote(lbls[k]) + ",")
	}
	return b.String()
}
