package detector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/kvfollow"
	"github.com/platform/platform/lease"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector/accrual"
	"github.com/platform/platform/streams"
)

// Service is one detector instance: it listens to every heartbeat, keeps
// the membership table, and, while it holds the lease, publishes
// transitions and writes MEMBERS. It is also the micro service
// platform-detector, whose endpoints answer from the table on any instance.
type Service struct {
	opts  Options
	log   *slog.Logger
	tab   *accrual.Table
	m     *metrics
	epoch time.Time
	rngMu sync.Mutex
	rng   *rand.Rand // loop start delays

	svc     *service.Service
	elected *lease.Elected // the active detector publishes
	bad     atomic.Uint64  // heartbeats dropped, also in metrics by reason
	ready   chan struct{}
}

// New checks the options and returns a detector ready to Run.
func New(opts Options) (*Service, error) {
	if opts.Conn == nil {
		return nil, errors.New("detector: nil NATS connection")
	}
	s, err := newService(opts)
	if err != nil {
		return nil, err
	}
	s.svc, err = service.New(service.Options{
		Conn:        opts.Conn,
		Name:        "detector",
		Description: "Heartbeat failure detector: membership view, network quality and failure prediction",
		Endpoints: []service.Endpoint{
			{Name: "members", Subject: streams.MembersListSubject, Handler: service.Func(s.handleMembers), Concurrency: 4,
				Description: `Current view: {"service":"..","state":"..","limit":1000}, every field optional`},
			{Name: "get", Subject: streams.MembersGetSubject, Handler: service.Func(s.handleGet), Concurrency: 4,
				Description: `One instance with its heartbeat inter-arrival times: {"service":"..","instance":".."}`},
			{Name: "status", Subject: streams.MembersStatusSubject, Handler: service.Func(s.handleStatus), Concurrency: 1,
				Description: "Whether this instance is active, members by state, what the predictor learned"},
		},
		HeartbeatInterval: opts.HeartbeatInterval,
		Logger:            opts.Logger,
		Registerer:        opts.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	return s, nil
}

// newService fills and checks the options and builds the detector
// without its micro service.
func newService(opts Options) (*Service, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	epoch := time.Now()
	tab, err := accrual.NewTable(opts.Options, epoch)
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	opts.Options = tab.Options()
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	s := &Service{
		opts:  opts,
		log:   opts.Logger.With("component", "detector"),
		tab:   tab,
		m:     newMetrics(opts.Registerer),
		epoch: epoch,
		rng:   rand.New(rand.NewPCG(seed, seed>>1|1)),
		ready: make(chan struct{}),
	}
	s.elected, err = lease.NewElected(lease.ElectedOptions{
		Key: lease.KeyDetector, TTL: opts.LeaseTTL, Renew: opts.LeaseRenew,
		Gauge: s.m.active, OnChange: s.setActive, Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	return s, nil
}

// Ready is closed once the detector listens to heartbeats and serves.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// ID returns the instance id once running, else "".
func (s *Service) ID() string { return s.svc.ID() }

// Active reports whether this instance holds the lease and publishes.
func (s *Service) Active() bool { return s.elected.Active() }

// Members returns the current view: members of svc (all when empty) in
// state (all when empty), sorted by key.
func (s *Service) Members(svc string, state membership.State) []membership.Member {
	return s.tab.Snapshot(s.now(), svc, state)
}

// now returns the time since the table's epoch, on the monotonic clock.
func (s *Service) now() time.Duration { return time.Since(s.epoch) }

// Run serves until ctx is done: it starts the micro service, listens on
// hb.>, follows MEMBERS, competes for the lease and evaluates states. On
// the way out it releases the lease so a standby takes over at once. It
// returns an error if the buckets it needs are missing or NATS fails at
// start; afterwards it only logs.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nc := s.opts.Conn
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return fmt.Errorf("detector: jetstream: %w", err)
	}
	membersKV, err := js.KeyValue(ctx, streams.BucketMembers)
	if err != nil {
		return fmt.Errorf("detector: open bucket %s: %w", streams.BucketMembers, err)
	}
	leasesKV, err := js.KeyValue(ctx, streams.BucketLeases)
	if err != nil {
		return fmt.Errorf("detector: open bucket %s: %w", streams.BucketLeases, err)
	}

	var wg sync.WaitGroup
	fail := func(err error) error {
		cancel()
		wg.Wait()
		return fmt.Errorf("detector: %w", err)
	}
	if err := s.elected.Serve(ctx, &wg, s.svc); err != nil {
		return fail(err)
	}
	s.log = s.log.With("id", s.svc.ID())

	hb := streams.HeartbeatPrefix + ">"
	sub, err := nc.Subscribe(hb, func(msg *nats.Msg) {
		s.ingest(msg.Subject, msg.Header, msg.Data, s.now())
	})
	if err != nil {
		return fail(fmt.Errorf("subscribe %s: %w", hb, err))
	}
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	follower, err := kvfollow.Start(ctx, membersKV, kvfollow.Options{Put: s.adopt, Delete: s.forget, Logger: s.log})
	if err != nil {
		_ = sub.Unsubscribe()
		return fail(err)
	}
	if err := s.elected.Campaign(ctx, &wg, leasesKV); err != nil {
		_ = sub.Unsubscribe()
		follower.Stop()
		return fail(err)
	}
	wg.Go(func() { s.evalLoop(ctx, js) })
	if s.opts.ProbeInterval > 0 {
		wg.Go(func() { s.probeLoop(ctx, nc) })
	}
	close(s.ready)
	s.log.Info("detector ready")

	<-ctx.Done()
	if err := sub.Drain(); err != nil {
		s.log.Debug("drain heartbeat subscription", "err", err)
	}
	follower.Stop()
	wg.Wait() // every loop has exited: the lease loop released the lease
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Second):
		s.log.Warn("unacknowledged publishes at stop")
	}
	s.log.Info("detector stopped")
	return nil
}

// ingest handles one heartbeat received at now: bad ones are counted and
// dropped.
func (s *Service) ingest(subject string, h nats.Header, data []byte, now time.Duration) {
	err := Ingest(s.tab, subject, h, data, now)
	if err == nil {
		s.m.heartbeats.Inc()
		return
	}
	s.bad.Add(1)
	s.m.bad[service.HeartbeatReason(err)].Inc()
	s.log.Debug("heartbeat dropped", "subject", subject, "err", err)
}

// loop runs fn every period until ctx is done, starting after a random
// delay within one period so instances started together do not act in
// lockstep. It owns its ticker; cancelling ctx stops it, any number of
// times.
func (s *Service) loop(ctx context.Context, period time.Duration, fn func()) {
	s.rngMu.Lock()
	delay := time.Duration(s.rng.Int64N(int64(period)))
	s.rngMu.Unlock()
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setActive is called by the lease when this instance becomes active or
// standby; Active has already changed.
func (s *Service) setActive(held bool) {
	if held {
		s.m.handovers.Inc()
		s.log.Info("detector active: publishing transitions")
	} else {
		s.log.Info("detector standby")
	}
}

// adopt keeps the table's view of MEMBERS, as followed: it adopts
// instances recorded there, and while standby it tracks what the active
// detector published.
func (s *Service) adopt(e jetstream.KeyValueEntry) {
	rec, err := membership.Decode(e.Key(), e.Value())
	if err != nil {
		return // not written by a detector
	}
	s.tab.Adopt(rec, s.now(), s.Active())
}

// forget takes a deleted or purged MEMBERS key out of the published view.
func (s *Service) forget(e jetstream.KeyValueEntry) {
	s.tab.Forget(e.Key(), s.Active())
}

// evalLoop evaluates states every EvalInterval and, while active,
// publishes the transitions and MEMBERS writes, each confirmed by its
// acknowledgement. While a write is retried the loop waits: the table
// keeps taking heartbeats, and the next evaluation derives whatever
// changed meanwhile.
func (s *Service) evalLoop(ctx context.Context, js jetstream.JetStream) {
	budget := max(1, int(s.opts.MaxWriteRate*s.opts.EvalInterval.Seconds()))
	w := &writer{
		js: js, log: s.log, holds: s.Active,
		ackWait: max(time.Second, 10*s.opts.EvalInterval),
		backoff: jsapi.Backoff{Base: 50 * time.Millisecond, Max: 2 * time.Second},
		failed:  s.m.publishErrs.Inc,
	}
	s.loop(ctx, s.opts.EvalInterval, func() {
		start := time.Now()
		active := s.Active()
		res := s.tab.Tick(s.now(), active, budget)
		out, err := Messages(res)
		if err != nil {
			s.log.Error("encode", "err", err)
		}
		s.account(res)
		s.m.tick.Observe(time.Since(start).Seconds())
		if out.Len() == 0 {
			return
		}
		if err := w.publish(ctx, out); err != nil && ctx.Err() == nil {
			// The lease moved on: the new holder derives what is missing
			// from MEMBERS, where this detector's last state never landed.
			s.log.Error("writes abandoned", "err", err)
		}
	})
}

func (s *Service) account(res accrual.TickResult) {
	for _, t := range res.Transitions {
		s.m.transitions.WithLabelValues(string(t.State)).Inc()
		s.log.Debug("transition", "member", t.Key(), "from", t.Previous, "to", t.State, "phi", t.Phi)
	}
	s.m.writes.Add(float64(len(res.Writes)))
	for _, st := range states {
		s.m.members.WithLabelValues(string(st)).Set(float64(res.Counts[st]))
	}
}

// states are the member states, in the order the endpoints name them.
var states = []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left}

// probeLoop measures round trips to micro service instances with
// $SRV.PING.<service>.<instance>, within ProbesPerSecond, and every
// evaluation tick probes the instances that went late (accrual's
// LateTargets): a late instance whose connection closed answers "no
// responders" and is dead at once. Instances that are not micro services
// answer "no responders" to their first probe and are left alone for ten
// minutes.
func (s *Service) probeLoop(ctx context.Context, nc *nats.Conn) {
	per := max(1, int(s.opts.ProbesPerSecond*s.opts.ProbeInterval.Seconds()))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	send := func(keys []string) {
		for _, key := range keys {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				s.probe(ctx, nc, key)
			})
		}
	}
	wg.Go(func() {
		s.loop(ctx, s.opts.EvalInterval, func() {
			if s.Active() {
				send(s.tab.LateTargets(s.now()))
			}
		})
	})
	s.loop(ctx, s.opts.ProbeInterval, func() {
		if s.Active() {
			send(s.tab.ProbeTargets(per, s.now()))
		}
	})
}

func (s *Service) probe(ctx context.Context, nc *nats.Conn, key string) {
	svc, inst, _ := strings.Cut(key, ".")
	subject, err := micro.ControlSubject(micro.PingVerb, svc, inst)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
	defer cancel()
	start := time.Now()
	_, err = nc.RequestWithContext(pctx, subject, nil)
	rtt := time.Since(start)
	switch {
	case err == nil:
		s.tab.ObserveRTT(key, rtt)
		s.m.rtt.Observe(rtt.Seconds())
	case errors.Is(err, nats.ErrNoResponders):
		s.tab.Gone(key, s.now())
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		s.tab.ObserveRTT(key, s.opts.ProbeTimeout)
	}
}

// membersRequest is the optional body of members.list.
type membersRequest struct {
	Service string           `json:"service"`
	State   membership.State `json:"state"`
	Limit   int              `json:"limit"`
}

// MembersResponse answers members.list.
type MembersResponse struct {
	Members   []membership.Member `json:"members"`
	Count     int                 `json:"count"`
	Truncated bool                `json:"truncated"`
}

const defaultMembersLimit = 1000

// decodeMembers reads the body of members.list, data, with decode (the
// request's Decode): an empty or blank body asks for every member. The
// service is a valid name or empty (every service), the state one of the
// four or empty, the limit at least 1 (defaultMembersLimit when not
// given); every refusal is a bad_request or too_large *service.Error.
func decodeMembers(data []byte, decode func(any) error) (membersRequest, error) {
	var req membersRequest
	if len(strings.TrimSpace(string(data))) > 0 {
		if err := decode(&req); err != nil {
			return membersRequest{}, err
		}
	}
	if req.Service != "" && !membership.ValidToken(req.Service) {
		// No member has such a name: say so rather than answer an empty list.
		return membersRequest{}, service.Errorf(service.CodeBadRequest, "service %q is not a valid service name", req.Service)
	}
	switch req.State {
	case "", membership.Alive, membership.Suspect, membership.Dead, membership.Left:
	default:
		return membersRequest{}, service.Errorf(service.CodeBadRequest, "unknown state %q: use alive, suspect, dead or left", req.State)
	}
	if req.Limit <= 0 {
		req.Limit = defaultMembersLimit
	}
	return req, nil
}

func (s *Service) handleMembers(_ context.Context, r *service.Request) (any, error) {
	req, err := decodeMembers(r.Data(), r.Decode)
	if err != nil {
		return nil, err
	}
	all := s.Members(req.Service, req.State)
	resp := MembersResponse{Members: all, Count: len(all)}
	if len(all) > req.Limit {
		resp.Members, resp.Truncated = all[:req.Limit], true
	}
	return resp, nil
}

// getRequest is the body of members.get.
type getRequest struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
}

// decodeGet reads the body of members.get with decode (the request's
// Decode): service and instance are valid names, or the answer is a
// bad_request or too_large *service.Error.
func decodeGet(decode func(any) error) (getRequest, error) {
	var req getRequest
	if err := decode(&req); err != nil {
		return getRequest{}, err
	}
	if !membership.ValidToken(req.Service) || !membership.ValidToken(req.Instance) {
		return getRequest{}, service.Errorf(service.CodeBadRequest, "service %q or instance %q is not a valid name", req.Service, req.Instance)
	}
	return req, nil
}

// handleGet answers members.get: the instance's record as this detector
// sees it now, with the heartbeat intervals its phi is computed from.
func (s *Service) handleGet(_ context.Context, r *service.Request) (any, error) {
	req, err := decodeGet(r.Decode)
	if err != nil {
		return nil, err
	}
	d, ok := s.tab.Detail(membership.Key(req.Service, req.Instance), s.now())
	if !ok {
		return nil, service.Errorf(service.CodeNotFound, "no member %s.%s", req.Service, req.Instance)
	}
	return d, nil
}

// StatusResponse answers detector.status.
type StatusResponse struct {
	ID        string                   `json:"id"`
	Active    bool                     `json:"active"`
	Members   map[membership.State]int `json:"members"`
	Bad       uint64                   `json:"bad_heartbeats"`
	Reordered uint64                   `json:"reordered_heartbeats"`
	Restarts  uint64                   `json:"restarts"`
	Model     StatusModel              `json:"model"`
	Options   map[string]int64         `json:"options_ms"`
}

// StatusModel is what the predictor learned from, and its weights.
type StatusModel struct {
	Positives int64              `json:"positives"`
	Negatives int64              `json:"negatives"`
	Bias      float64            `json:"bias"`
	Weights   map[string]float64 `json:"weights"`
}

func (s *Service) handleStatus(_ context.Context, _ *service.Request) (any, error) {
	counts := make(map[membership.State]int, len(states))
	for _, st := range states {
		counts[st] = 0
	}
	for _, m := range s.Members("", "") {
		counts[m.State]++
	}
	st := s.tab.Stats()
	return StatusResponse{
		ID: s.ID(), Active: s.Active(), Members: counts,
		Bad: s.bad.Load(), Reordered: st.Reordered, Restarts: st.Restarts,
		Model: StatusModel{Positives: st.Positives, Negatives: st.Negatives, Bias: st.Bias, Weights: st.Weights},
		Options: map[string]int64{
			"eval_interval":    s.opts.EvalInterval.Milliseconds(),
			"refresh_interval": s.opts.RefreshInterval.Milliseconds(),
			"lease_ttl":        s.opts.LeaseTTL.Milliseconds(),
		},
	}, nil
}
