package balancer

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// handleRoute forwards route.<subject> to the best instance serving
// <subject> and relays its answer, headers and body, unchanged. It runs
// inline on the endpoint's subscription and must not block: it checks
// the subject and sends the request on, and the answer is relayed from
// the router's reply subscription (a hedged request, or one for the
// queue group, waits on a goroutine of its own), so requests stuck on
// one service never hold up those for another; the router's per-service
// and per-instance limits bound them instead.
//
// Only subjects that an endpoint of a discovered micro service serves are
// forwarded, never the server's or JetStream's ($JS., $SYS., $KV., any
// $...), inboxes (_INBOX., any _...) or route. and inst. themselves: the
// balancer's connection may publish where its callers may not. Every
// failure is an error body: bad_request for those, not_found for a
// subject no discovered service serves, unavailable with retry_after_ms
// at once when no instance is healthy or the service has too many
// requests in flight, timeout when the chosen instance does not answer
// by the request's deadline (the route endpoint's timeout, counted from
// its arrival).
func (s *Service) handleRoute(ctx context.Context, r *service.Request) {
	target, err := streams.RouteTarget(r.Subject())
	if err == nil {
		err = refuseTarget(target)
	}
	if err != nil {
		s.m.routed.WithLabelValues("bad_subject").Inc()
		r.Fail(service.Errorf(service.CodeBadRequest, "cannot route %q: %v", r.Subject(), err))
		return
	}
	if !r.HasReply() {
		s.m.routed.WithLabelValues("bad_request").Inc()
		r.Fail(service.Errorf(service.CodeBadRequest, "route.<subject> needs a reply subject: send a request"))
		return
	}
	// Admission does not block: an unknown subject, a full service or no
	// healthy instance is answered here, without a goroutine.
	t, err := s.router.admit(&nats.Msg{Subject: target, Header: r.Header(), Data: r.Data()}, true)
	if err != nil {
		s.fail(r, target, err)
		return
	}
	s.forwarding.Add(1)
	relay := func(resp *nats.Msg, err error) {
		defer s.forwarding.Done()
		if err != nil {
			s.fail(r, target, err)
			return
		}
		s.m.routed.WithLabelValues("ok").Inc()
		r.Relay(resp)
	}
	// Most requests are sent here and answered from the router's reply
	// subscription; hedged ones and those for the queue group get a
	// goroutine that waits.
	deadline := time.Now().Add(s.routeTimeout)
	if s.router.forward(t, deadline, relay) {
		return
	}
	go func() {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		relay(s.router.complete(ctx, t))
	}()
}

// refuseTarget returns why subject may not be routed, nil if it may.
func refuseTarget(subject string) error {
	switch {
	case strings.HasPrefix(subject, "$"), strings.HasPrefix(subject, "_"):
		return errors.New("system, JetStream and inbox subjects cannot be routed")
	case strings.HasPrefix(subject, streams.RoutePrefix), strings.HasPrefix(subject, streams.InstancePrefix):
		return errors.New("a routed subject cannot be routed again or name an instance")
	}
	return nil
}

// retryOverloaded is the retry_after_ms of an overloaded service: its
// requests in flight usually finish within it.
const retryOverloaded = 100 * time.Millisecond

// fail answers a request the router could not forward.
func (s *Service) fail(r *service.Request, target string, err error) {
	switch {
	case errors.Is(err, ErrUnknownSubject):
		s.m.routed.WithLabelValues("unknown_subject").Inc()
		r.Fail(service.Errorf(service.CodeNotFound, "no micro service serves %q", target).With("subject", target))
	case errors.Is(err, ErrNoInstance):
		s.m.routed.WithLabelValues("no_instance").Inc()
		// Weights and instances are looked at again within the
		// discovery interval.
		retry := min(s.router.opts.Discovery, time.Second)
		r.Fail(service.Errorf(service.CodeUnavailable, "no healthy instance serves %q", target).
			With("subject", target).With("retry_after_ms", retry.Milliseconds()))
	case errors.Is(err, ErrOverloaded):
		s.m.routed.WithLabelValues("overloaded").Inc()
		r.Fail(service.Errorf(service.CodeUnavailable, "too many requests in flight to the service serving %q", target).
			With("subject", target).With("reason", "overloaded").With("retry_after_ms", retryOverloaded.Milliseconds()))
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		s.m.routed.WithLabelValues("timeout").Inc()
		r.Fail(service.Errorf(service.CodeTimeout, "no answer from %q in time: %v", target, err).With("subject", target))
	default:
		s.m.routed.WithLabelValues("error").Inc()
		r.Fail(service.Errorf(service.CodeUnavailable, "forward %q: %v", target, err).With("subject", target))
	}
}

// InstanceStatus is one instance in balancer.status.
type InstanceStatus struct {
	Record
	// Routed is how many requests this balancer instance sent it.
	Routed uint64 `json:"routed"`
	// Share is Routed over all requests this instance routed to its
	// service.
	Share float64 `json:"share"`
	// LatencyMS is the router's latency estimate (EWMA).
	LatencyMS float64 `json:"router_latency_ms"`
	// InFlight is the requests this router has outstanding on it.
	InFlight int64 `json:"router_in_flight"`
}

// StatusResponse answers balancer.status.
type StatusResponse struct {
	ID        string           `json:"id"`
	Active    bool             `json:"active"`
	Strategy  string           `json:"strategy"`
	Instances []InstanceStatus `json:"instances"`
}

// Status returns what balancer.status answers.
func (s *Service) Status() StatusResponse {
	s.mu.Lock()
	recs := append([]Record(nil), s.records...)
	s.mu.Unlock()
	routed := s.router.Instances()
	perSvc := map[string]uint64{}
	for _, rs := range routed {
		perSvc[rs.Service] += rs.Routed
	}
	out := StatusResponse{ID: s.ID(), Active: s.Active(), Strategy: s.router.opts.Strategy.String()}
	seen := map[string]bool{}
	add := func(rec Record) {
		st := InstanceStatus{Record: rec}
		if rs, ok := routed[rec.Key()]; ok {
			st.Routed, st.InFlight, st.LatencyMS = rs.Routed, rs.InFlight, rs.LatencyMS
			if n := perSvc[rec.Service]; n > 0 {
				st.Share = float64(rs.Routed) / float64(n)
			}
		}
		out.Instances = append(out.Instances, st)
		seen[rec.Key()] = true
	}
	for _, r := range recs {
		add(r)
	}
	for k, rs := range routed {
		if !seen[k] {
			add(Record{Service: rs.Service, Instance: rs.Instance})
		}
	}
	sort.Slice(out.Instances, func(i, j int) bool { return out.Instances[i].Key() < out.Instances[j].Key() })
	return out
}

func (s *Service) handleStatus(context.Context, *service.Request) (any, error) {
	return s.Status(), nil
}

func (s *Service) handleBalance(ctx context.Context, _ *service.Request) (any, error) {
	if s.opts.Leaders == nil {
		return nil, service.Errorf(service.CodeUnavailable, "leader placement is off in this balancer instance")
	}
	rep, err := s.opts.Leaders.Balance(ctx, s.opts.Conn, s.log)
	s.m.leaderMoves.Add(float64(rep.Moved))
	if err != nil {
		return nil, service.Errorf(service.CodeUnavailable, "balance leaders: %v", err)
	}
	return rep, nil
}
