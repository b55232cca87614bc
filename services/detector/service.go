package detector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// Subjects of the detector's endpoints. They cannot live under detector.>,
// which stream DETECTOR captures.
const (
	SubjectMembers = "members.list"
	SubjectStatus  = "members.status"
)

// Service is one detector instance: it listens to every heartbeat, keeps
// the membership table, and, while it holds the lease, publishes
// transitions and writes MEMBERS. It is also the micro service
// platform-detector, whose endpoints answer from the table on any instance.
type Service struct {
	opts  Options
	log   *slog.Logger
	tab   *table
	m     *metrics
	epoch time.Time
	rngMu sync.Mutex
	rng   *rand.Rand // loop start delays

	svc    *service.Service
	active atomic.Bool
	bad    atomic.Uint64 // heartbeats dropped, also in metrics by reason
	ready  chan struct{}
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
			{Name: "members", Subject: SubjectMembers, Handler: service.Func(s.handleMembers), Concurrency: 4,
				Description: `Current view: {"service":"..","state":"..","limit":1000}, every field optional`},
			{Name: "status", Subject: SubjectStatus, Handler: service.Func(s.handleStatus), Concurrency: 1,
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

// newService builds the detection core without NATS (the simulation and
// the scale measurement drive it directly).
func newService(opts Options) (*Service, error) {
	opts.fill()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	epoch := time.Now()
	return &Service{
		opts:  opts,
		log:   opts.Logger.With("component", "detector"),
		tab:   newTable(opts, epoch),
		m:     newMetrics(opts.Registerer),
		epoch: epoch,
		rng:   rand.New(rand.NewPCG(seed, seed>>1|1)),
		ready: make(chan struct{}),
	}, nil
}

// Ready is closed once the detector listens to heartbeats and serves.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// ID returns the instance id once running, else "".
func (s *Service) ID() string { return s.svc.ID() }

// Active reports whether this instance holds the lease and publishes.
func (s *Service) Active() bool { return s.active.Load() }

// Members returns the current view: members of svc (all when empty) in
// state (all when empty), sorted by key.
func (s *Service) Members(svc string, state State) []Member {
	return s.tab.snapshot(s.now(), svc, state)
}

func (s *Service) now() int64 { return int64(time.Since(s.epoch)) }

// Run serves until ctx is done: it starts the micro service, listens on
// hb.>, follows MEMBERS, competes for the lease and evaluates states. On
// the way out it releases the lease so a standby takes over at once. It
// returns an error if the buckets it needs are missing or NATS fails at
// start; afterwards it only logs.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nc := s.opts.Conn
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			s.m.publishErrs.Inc()
			s.log.Debug("publish not acknowledged", "subject", m.Subject, "err", err)
		}))
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
	svcErr := make(chan error, 1)
	wg.Go(func() { svcErr <- s.svc.Run(ctx) })
	select {
	case <-s.svc.Ready():
	case err := <-svcErr:
		wg.Wait()
		return fmt.Errorf("detector: %w", err)
	}
	id := s.svc.ID()
	s.m.active = s.m.activeVec.WithLabelValues(id)
	s.log = s.log.With("id", id)

	sub, err := nc.Subscribe(HeartbeatPrefix+".>", func(msg *nats.Msg) {
		s.ingest(msg.Subject, msg.Header, msg.Data, s.now())
	})
	if err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("detector: subscribe %s.>: %w", HeartbeatPrefix, err)
	}
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	watcher, err := membersKV.WatchAll(ctx)
	if err != nil {
		_ = sub.Unsubscribe()
		cancel()
		wg.Wait()
		return fmt.Errorf("detector: watch %s: %w", streams.BucketMembers, err)
	}

	wg.Go(func() { s.follow(ctx, watcher) })
	l := newLease(leasesKV, id, s.opts.LeaseTTL, s.opts.LeaseRenew)
	wg.Go(func() { s.leaseLoop(ctx, l) })
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
	wg.Wait() // every loop has exited: the lease loop released the lease
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Second):
		s.log.Warn("unacknowledged publishes at stop")
	}
	s.m.active.Set(0)
	s.log.Info("detector stopped")
	return nil
}

// ingest handles one heartbeat received at now: bad ones are counted and
// dropped.
func (s *Service) ingest(subject string, h nats.Header, data []byte, now int64) {
	svc, inst, err := ParseSubject(subject)
	if err == nil {
		var l service.Load
		if l, err = DecodeHeartbeat(h, data); err == nil {
			s.tab.heartbeat(svc, inst, l, now)
			s.m.heartbeats.Inc()
			return
		}
	}
	s.bad.Add(1)
	s.m.bad[reasonOf(err)].Inc()
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

// leaseLoop competes for the lease; on the way out it releases it.
func (s *Service) leaseLoop(ctx context.Context, l *lease) {
	s.loop(ctx, s.opts.LeaseRenew, func() {
		rctx, cancel := context.WithTimeout(ctx, s.opts.LeaseRenew)
		held, err := l.step(rctx, time.Now())
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("lease", "err", err)
		}
		s.setActive(held)
	})
	s.setActive(false)
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.release(rctx); err != nil {
		s.log.Warn("release lease", "err", err)
	}
}

func (s *Service) setActive(held bool) {
	if s.active.Swap(held) == held {
		return
	}
	if held {
		s.m.active.Set(1)
		s.m.handovers.Inc()
		s.log.Info("detector active: publishing transitions")
	} else {
		s.m.active.Set(0)
		s.log.Info("detector standby")
	}
}

// follow keeps the table's view of MEMBERS: it adopts instances recorded
// there, and while standby it tracks what the active detector published.
func (s *Service) follow(ctx context.Context, w jetstream.KeyWatcher) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue // initial values delivered
			}
			if e.Operation() != jetstream.KeyValuePut {
				s.tab.forget(e.Key(), s.active.Load())
				continue
			}
			var rec Member
			if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Key() != e.Key() {
				continue // not written by a detector
			}
			s.tab.adopt(rec, s.now(), s.active.Load())
		}
	}
}

// evalLoop evaluates states every EvalInterval and, while active,
// publishes the transitions and MEMBERS writes.
func (s *Service) evalLoop(ctx context.Context, js jetstream.JetStream) {
	budget := max(1, int(s.opts.MaxWriteRate*s.opts.EvalInterval.Seconds()))
	s.loop(ctx, s.opts.EvalInterval, func() {
		start := time.Now()
		active := s.active.Load()
		res := s.tab.tick(s.now(), active, budget)
		msgs := s.encode(res)
		for _, m := range msgs {
			var opts []jetstream.PublishOpt
			if id := m.Header.Get(nats.MsgIdHdr); id != "" {
				m.Header.Del(nats.MsgIdHdr)
				opts = append(opts, jetstream.WithMsgID(id))
			}
			if _, err := js.PublishMsgAsync(m, opts...); err != nil {
				s.m.publishErrs.Inc()
				s.log.Warn("publish", "subject", m.Subject, "err", err)
			}
		}
		s.account(res)
		s.m.tick.Observe(time.Since(start).Seconds())
	})
}

// encode turns an evaluation into messages: transitions to DETECTOR (with
// a message id), records and deletions to MEMBERS.
func (s *Service) encode(res tickResult) []*nats.Msg {
	out := make([]*nats.Msg, 0, len(res.transitions)+len(res.writes)+len(res.deletes))
	for _, t := range res.transitions {
		b, err := json.Marshal(t)
		if err != nil {
			s.log.Error("encode transition", "err", err)
			continue
		}
		m := nats.NewMsg(t.Subject())
		m.Data = b
		m.Header.Set(service.HeaderContentType, service.ContentTypeJSON)
		m.Header.Set(nats.MsgIdHdr, msgID(t))
		out = append(out, m)
	}
	for _, w := range res.writes {
		b, err := json.Marshal(w)
		if err != nil {
			s.log.Error("encode member", "err", err)
			continue
		}
		out = append(out, &nats.Msg{Subject: "$KV." + streams.BucketMembers + "." + w.Key(), Data: b})
	}
	for _, k := range res.deletes {
		m := nats.NewMsg("$KV." + streams.BucketMembers + "." + k)
		m.Header.Set("KV-Operation", "DEL")
		out = append(out, m)
	}
	return out
}

// msgID names a transition the same on every detector that derives it:
// the instance, the new state, the sequence of its last heartbeat and the
// arrival of that heartbeat to a tenth of a second (sequences restart with
// the process; the time tells incarnations apart).
func msgID(t Transition) string {
	return t.Key() + "." + string(t.State) + "." + strconv.FormatUint(t.seq, 10) + "." +
		strconv.FormatInt(t.LastSeen.UnixMilli()/100, 10)
}

func (s *Service) account(res tickResult) {
	for _, t := range res.transitions {
		s.m.transitions.WithLabelValues(string(t.State)).Inc()
		s.log.Debug("transition", "member", t.Key(), "from", t.Previous, "to", t.State, "phi", t.Phi)
	}
	s.m.writes.Add(float64(len(res.writes)))
	for _, st := range []State{Alive, Suspect, Dead, Left} {
		s.m.members.WithLabelValues(string(st)).Set(float64(res.counts[st]))
	}
}

// probeLoop measures round trips to micro service instances with
// $SRV.PING.<service>.<instance>, within ProbesPerSecond. Instances that
// are not micro services answer "no responders" and are left alone for
// ten minutes.
func (s *Service) probeLoop(ctx context.Context, nc *nats.Conn) {
	per := max(1, int(s.opts.ProbesPerSecond*s.opts.ProbeInterval.Seconds()))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	s.loop(ctx, s.opts.ProbeInterval, func() {
		if !s.active.Load() {
			return
		}
		for _, key := range s.tab.probeTargets(per, s.now()) {
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
	})
}

func (s *Service) probe(ctx context.Context, nc *nats.Conn, key string) {
	svc, inst, _ := strings.Cut(key, ".")
	pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
	defer cancel()
	start := time.Now()
	_, err := nc.RequestWithContext(pctx, "$SRV.PING."+svc+"."+inst, nil)
	rtt := time.Since(start)
	switch {
	case err == nil:
		s.tab.observeRTT(key, rtt)
		s.m.rtt.Observe(rtt.Seconds())
	case errors.Is(err, nats.ErrNoResponders):
		s.tab.noProbe(key, s.now()+int64(10*time.Minute))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		s.tab.observeRTT(key, s.opts.ProbeTimeout)
	}
}

// membersRequest is the optional body of detector.members.
type membersRequest struct {
	Service string `json:"service"`
	State   State  `json:"state"`
	Limit   int    `json:"limit"`
}

// MembersResponse answers detector.members.
type MembersResponse struct {
	Members   []Member `json:"members"`
	Count     int      `json:"count"`
	Truncated bool     `json:"truncated"`
}

const defaultMembersLimit = 1000

func (s *Service) handleMembers(_ context.Context, r *service.Request) (any, error) {
	var req membersRequest
	if len(strings.TrimSpace(string(r.Data()))) > 0 {
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
	}
	switch req.State {
	case "", Alive, Suspect, Dead, Left:
	default:
		return nil, service.Errorf(service.CodeBadRequest, "unknown state %q: use alive, suspect, dead or left", req.State)
	}
	if req.Limit <= 0 {
		req.Limit = defaultMembersLimit
	}
	all := s.Members(req.Service, req.State)
	resp := MembersResponse{Members: all, Count: len(all)}
	if len(all) > req.Limit {
		resp.Members, resp.Truncated = all[:req.Limit], true
	}
	return resp, nil
}

// StatusResponse answers detector.status.
type StatusResponse struct {
	ID        string           `json:"id"`
	Active    bool             `json:"active"`
	Members   map[State]int    `json:"members"`
	Bad       uint64           `json:"bad_heartbeats"`
	Reordered uint64           `json:"reordered_heartbeats"`
	Restarts  uint64           `json:"restarts"`
	Model     StatusModel      `json:"model"`
	Options   map[string]int64 `json:"options_ms"`
}

// StatusModel is what the predictor learned from, and its weights.
type StatusModel struct {
	Positives int64              `json:"positives"`
	Negatives int64              `json:"negatives"`
	Bias      float64            `json:"bias"`
	Weights   map[string]float64 `json:"weights"`
}

func (s *Service) handleStatus(_ context.Context, _ *service.Request) (any, error) {
	counts := map[State]int{Alive: 0, Suspect: 0, Dead: 0, Left: 0}
	for _, m := range s.Members("", "") {
		counts[m.State]++
	}
	pos, neg, w, b := s.tab.modelStats()
	s.tab.mu.Lock()
	reordered, restarts := s.tab.reordered, s.tab.restarts
	s.tab.mu.Unlock()
	return StatusResponse{
		ID: s.ID(), Active: s.Active(), Members: counts,
		Bad: s.bad.Load(), Reordered: reordered, Restarts: restarts,
		Model: StatusModel{Positives: pos, Negatives: neg, Bias: b, Weights: w},
		Options: map[string]int64{
			"eval_interval":    s.opts.EvalInterval.Milliseconds(),
			"refresh_interval": s.opts.RefreshInterval.Milliseconds(),
			"lease_ttl":        s.opts.LeaseTTL.Milliseconds(),
		},
	}, nil
}
