package consume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// Limits of the consume service's requests.
const (
	// DefaultNextMax is how many events consume.<group>.next hands out
	// when the request does not say.
	DefaultNextMax = 100
	// MaxNextMax bounds max in one next request.
	MaxNextMax = 1000
	// MaxNextWait bounds wait_ms in one next request.
	MaxNextWait = 30 * time.Second
	// MaxSettle bounds the tokens of one ack request.
	MaxSettle = 10000
	// MaxNakDelay bounds a nak's delay.
	MaxNakDelay = 24 * time.Hour
)

// forwardedHeader marks an ack request one instance forwarded to the
// instance that handed the events out, so it is not forwarded again.
const forwardedHeader = "Platform-Consume-Forwarded"

// ServiceName is the consume service's name: its micro service is
// platform-consume.
const ServiceName = "consume"

// ServiceOptions configure the consume service.
type ServiceOptions struct {
	// Conn is the NATS connection it serves and consumes on. Required.
	Conn *nats.Conn
	// TTL and Tick are its members' (defaults DefaultTTL, DefaultTick).
	TTL, Tick time.Duration
	// HeartbeatInterval is the instance's heartbeat interval (default 1s).
	HeartbeatInterval time.Duration
	// Logger is the service's logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the service's metrics (nil: not exported).
	Registerer prometheus.Registerer
}

// Service is the platform-consume micro service: it hands out the events
// of consumer groups to any client and settles them by token. Each
// instance joins a group as an at-least-once member (named by its
// instance id) at the group's first request, and stays in it until it
// stops.
type Service struct {
	svc   *service.Service
	opts  ServiceOptions
	store *txn.Store
	js    jetstream.JetStream
	log   *slog.Logger

	starts chan startReq

	mu      sync.Mutex
	members map[string]*Member
}

// startReq asks Run's goroutine to start a member for a group.
type startReq struct {
	cfg   GroupConfig
	reply chan *Member
}

// NewService returns the consume service.
func NewService(opts ServiceOptions) (*Service, error) {
	if opts.Conn == nil {
		return nil, errors.New("consume: nil NATS connection")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	store, err := txn.NewStore(opts.Conn, txn.WithLogger(opts.Logger))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	s := &Service{
		opts: opts, store: store, js: js,
		log:     opts.Logger.With("component", ServiceName),
		starts:  make(chan startReq),
		members: map[string]*Member{},
	}
	all := func(verb string) string { return streams.ConsumeSubject("*", verb) }
	s.svc, err = service.New(service.Options{
		Conn:        opts.Conn,
		Name:        ServiceName,
		Description: "Consumer groups over EVENTS for any client: decoded events handed out per partition in order, settled one by one by token",
		Endpoints: []service.Endpoint{
			{
				Name:        "next",
				Subject:     all("next"),
				Description: `Hand out events of group <g>: {"max":100,"wait_ms":1000} -> {"events":[{"subject":..,"data":..,"headers":..,"position":"12:3","partition":5,"attempt":1,"token":..}]}`,
				Handler:     service.Func(s.handleNext),
				Concurrency: 64,
				Timeout:     MaxNextWait + 10*time.Second,
			},
			{
				Name:        "ack",
				Subject:     all("ack"),
				Description: `Settle events by token: {"ack":[t..],"nak":[{"token":t,"delay_ms":1000}],"in_progress":[t..],"term":[{"token":t,"reason":".."}]} -> {"results":[{"token":t,"op":"ack","ok":true}..]}`,
				Handler:     service.Func(s.handleAck),
				Concurrency: 16,
			},
			{
				Name:        "status",
				Subject:     all("status"),
				Description: "Group <g>'s settings, members, partition owners and committed positions",
				Handler:     service.Func(s.handleStatus),
				Concurrency: 4,
			},
			{
				Name:        "create",
				Subject:     all("create"),
				Description: `Create group <g> (or check it): {"filter":["events.orders.>"],"partitions":16,"max_deliver":5,"ack_wait_ms":30000}, every field optional`,
				Handler:     service.Func(s.handleCreate),
				Concurrency: 4,
			},
		},
		HeartbeatInterval: opts.HeartbeatInterval,
		Logger:            opts.Logger,
		Registerer:        opts.Registerer,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Ready is closed once the service serves.
func (s *Service) Ready() <-chan struct{} { return s.svc.Ready() }

// Run serves until ctx is done, then its members leave their groups,
// writing the positions of what was settled.
func (s *Service) Run(ctx context.Context) error {
	mctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	served := make(chan error, 1)
	go func() { served <- s.svc.Run(ctx) }()
	for {
		select {
		case err := <-served:
			return err
		case req := <-s.starts:
			req.reply <- s.start(mctx, &wg, req.cfg)
		}
	}
}

// start runs a member of cfg's group under ctx, or returns the one
// already running.
func (s *Service) start(ctx context.Context, wg *sync.WaitGroup, cfg GroupConfig) *Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.members[cfg.Name]; m != nil {
		return m
	}
	m, err := New(Options{
		Conn: s.opts.Conn, Store: s.store, Group: cfg.Name, Member: s.svc.ID(),
		Filter: cfg.Filter, Partitions: cfg.Partitions, AtLeastOnce: true,
		TTL: s.opts.TTL, Tick: s.opts.Tick, Logger: s.opts.Logger,
	})
	if err != nil {
		s.log.Error("start member", "group", cfg.Name, "err", err)
		return nil
	}
	s.members[cfg.Name] = m
	wg.Go(func() {
		if err := m.Run(ctx); err != nil {
			s.log.Error("group member stopped", "group", cfg.Name, "err", err)
		}
		s.mu.Lock()
		delete(s.members, cfg.Name)
		s.mu.Unlock()
	})
	s.log.Info("joined group", "group", cfg.Name, "partitions", cfg.Partitions, "filter", cfg.Filter)
	return m
}

// member returns this instance's member of group, joining the group
// first if needed; a group that does not exist is not_found.
func (s *Service) member(ctx context.Context, group string) (*Member, error) {
	s.mu.Lock()
	m := s.members[group]
	s.mu.Unlock()
	if m != nil {
		return m, nil
	}
	cfg, err := LookupGroup(ctx, s.store, group)
	if err != nil {
		return nil, groupError(group, err)
	}
	reply := make(chan *Member, 1)
	select {
	case s.starts <- startReq{cfg, reply}:
	case <-ctx.Done():
		return nil, service.Errorf(service.CodeUnavailable, "consume service stopping")
	}
	if m = <-reply; m == nil {
		return nil, service.Errorf(service.CodeInternal, "cannot join group %s", group)
	}
	return m, nil
}

// groupError turns a group lookup's error into a service error.
func groupError(group string, err error) *service.Error {
	switch {
	case errors.Is(err, ErrUnknownGroup):
		return service.Errorf(service.CodeNotFound, "no consumer group %q: create it with %s or platform consume create %s", group, streams.ConsumeSubject(group, "create"), group)
	case errors.Is(err, ErrConfig):
		return service.Errorf(service.CodeConflict, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return service.Errorf(service.CodeTimeout, "%v", err)
	}
	return service.Errorf(service.CodeUnavailable, "%v", err)
}

// groupOf reads the group from consume.<group>.<verb>.
func groupOf(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, streams.ConsumePrefix)
	g, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || !validName(g) {
		return "", service.Errorf(service.CodeBadRequest, "bad group in %q: want consume.<group>.<verb> with a group of letters, digits, - and _", subject)
	}
	return g, nil
}

// CreateRequest is the body of consume.<group>.create; every field is
// optional.
type CreateRequest struct {
	Filter     []string `json:"filter,omitempty"`
	Partitions int      `json:"partitions,omitempty"`
	MaxDeliver int      `json:"max_deliver,omitempty"`
	AckWaitMS  int64    `json:"ack_wait_ms,omitempty"`
}

// GroupInfo is a group's settings as the service answers them.
type GroupInfo struct {
	Group      string   `json:"group"`
	Partitions int      `json:"partitions"`
	Filter     []string `json:"filter"`
	MaxDeliver int      `json:"max_deliver"`
	AckWaitMS  int64    `json:"ack_wait_ms"`
}

func infoOf(g GroupConfig) GroupInfo {
	return GroupInfo{Group: g.Name, Partitions: g.Partitions, Filter: g.Filter, MaxDeliver: g.MaxDeliver, AckWaitMS: g.AckWait.Milliseconds()}
}

func (s *Service) handleCreate(ctx context.Context, r *service.Request) (any, error) {
	group, err := groupOf(r.Subject())
	if err != nil {
		return nil, err
	}
	var req CreateRequest
	if len(bytes.TrimSpace(r.Data())) > 0 {
		if err := r.DecodeDocument(&req); err != nil {
			return nil, err
		}
	}
	g, err := req.config(group)
	if err != nil {
		return nil, err
	}
	got, err := CreateGroup(ctx, s.store, g)
	if err != nil {
		return nil, groupError(group, err)
	}
	return infoOf(got), nil
}

// config checks a decoded CreateRequest for group and returns the
// configuration it asks for, defaults filled in. Failures are
// bad_request *service.Errors.
func (req CreateRequest) config(group string) (GroupConfig, error) {
	if req.AckWaitMS < 0 || req.AckWaitMS > MaxNakDelay.Milliseconds() {
		return GroupConfig{}, service.Errorf(service.CodeBadRequest, "ack_wait_ms %d: want 100 to %d", req.AckWaitMS, MaxNakDelay.Milliseconds())
	}
	g := GroupConfig{Name: group, Filter: req.Filter, Partitions: req.Partitions, MaxDeliver: req.MaxDeliver, AckWait: time.Duration(req.AckWaitMS) * time.Millisecond}
	g.defaults()
	if err := g.validate(); err != nil {
		return GroupConfig{}, service.Errorf(service.CodeBadRequest, "%v", err)
	}
	return g, nil
}

// StatusResponse answers consume.<group>.status: Status's answer and
// the group's at-least-once settings.
type StatusResponse struct {
	GroupStatus
	MaxDeliver int   `json:"max_deliver"`
	AckWaitMS  int64 `json:"ack_wait_ms"`
}

func (s *Service) handleStatus(ctx context.Context, r *service.Request) (any, error) {
	group, err := groupOf(r.Subject())
	if err != nil {
		return nil, err
	}
	cfg, err := LookupGroup(ctx, s.store, group)
	if err != nil {
		return nil, groupError(group, err)
	}
	st, err := Status(ctx, s.js, s.store, group)
	if err != nil {
		return nil, groupError(group, err)
	}
	return StatusResponse{GroupStatus: st, MaxDeliver: cfg.MaxDeliver, AckWaitMS: cfg.AckWait.Milliseconds()}, nil
}
