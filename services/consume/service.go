package consume

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/replicator"
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

// NextRequest is the body of consume.<group>.next; an empty body takes
// the defaults.
type NextRequest struct {
	// Max is the most events to hand out (default DefaultNextMax, at most
	// MaxNextMax).
	Max int `json:"max"`
	// WaitMS is how long to wait for a first event (default 0: answer at
	// once; at most MaxNextWait).
	WaitMS int64 `json:"wait_ms"`
}

// NextResponse answers consume.<group>.next.
type NextResponse struct {
	Events []WireEvent `json:"events"`
}

// WireEvent is one handed-out event as the service sends it.
type WireEvent struct {
	// Subject is the event's subject in EVENTS.
	Subject string `json:"subject"`
	// Data is the payload when it is valid UTF-8 (JSON or text), as is.
	Data *string `json:"data,omitempty"`
	// DataBase64 is the payload, base64 (standard, padded), when it is not
	// valid UTF-8.
	DataBase64 string `json:"data_base64,omitempty"`
	// Headers are the event's own headers.
	Headers map[string][]string `json:"headers,omitempty"`
	// Position is where it is stored: "seq", or "seq:index" in an envelope.
	Position string `json:"position"`
	// Time is when EVENTS stored it.
	Time time.Time `json:"time"`
	// Partition is its partition in the group.
	Partition int `json:"partition"`
	// Attempt counts its deliveries, this one included.
	Attempt int `json:"attempt"`
	// Token settles it in consume.<group>.ack.
	Token string `json:"token"`
}

// wire converts a delivery.
func wire(d Delivery) WireEvent {
	w := WireEvent{
		Subject: d.Event.Subject, Headers: d.Event.Header, Position: positionText(d.Event.Pos),
		Time: d.Event.Time, Partition: d.Partition, Attempt: d.Attempt, Token: d.Token,
	}
	if utf8.Valid(d.Event.Data) {
		s := string(d.Event.Data)
		w.Data = &s
	} else {
		w.DataBase64 = base64.StdEncoding.EncodeToString(d.Event.Data)
	}
	return w
}

// Event converts a WireEvent back into an event (its position's Count
// is 0 outside an envelope and unknown inside: 2).
func (w WireEvent) Event() (replicator.Event, error) {
	ev := replicator.Event{Subject: w.Subject, Header: w.Headers, Time: w.Time}
	if w.Data != nil {
		ev.Data = []byte(*w.Data)
	} else if w.DataBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(w.DataBase64)
		if err != nil {
			return ev, fmt.Errorf("consume: event %s: data_base64: %w", w.Position, err)
		}
		ev.Data = b
	}
	seq, idx, enveloped := strings.Cut(w.Position, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return ev, fmt.Errorf("consume: event position %q: %w", w.Position, err)
	}
	ev.Pos = replicator.Position{Seq: n, Count: 1}
	if enveloped {
		i, err := strconv.Atoi(idx)
		if err != nil {
			return ev, fmt.Errorf("consume: event position %q: %w", w.Position, err)
		}
		ev.Pos.Index, ev.Pos.Count = i, 2
	}
	return ev, nil
}

func (s *Service) handleNext(ctx context.Context, r *service.Request) (any, error) {
	group, err := groupOf(r.Subject())
	if err != nil {
		return nil, err
	}
	req := NextRequest{Max: DefaultNextMax}
	if len(bytes.TrimSpace(r.Data())) > 0 {
		if err := r.DecodeDocument(&req); err != nil {
			return nil, err
		}
	}
	switch {
	case req.Max == 0:
		req.Max = DefaultNextMax
	case req.Max < 0 || req.Max > MaxNextMax:
		return nil, service.Errorf(service.CodeBadRequest, "max %d: want 1 to %d", req.Max, MaxNextMax)
	}
	wait := time.Duration(req.WaitMS) * time.Millisecond
	if req.WaitMS < 0 || wait > MaxNextWait {
		return nil, service.Errorf(service.CodeBadRequest, "wait_ms %d: want 0 to %d", req.WaitMS, MaxNextWait.Milliseconds())
	}
	m, err := s.member(ctx, group)
	if err != nil {
		return nil, err
	}
	ds, err := m.Next(ctx, req.Max, wait)
	if err != nil {
		return nil, service.Errorf(service.CodeTimeout, "%v", err)
	}
	out := NextResponse{Events: make([]WireEvent, len(ds))}
	for i, d := range ds {
		out.Events[i] = wire(d)
	}
	return out, nil
}

// AckRequest is the body of consume.<group>.ack: tokens to settle, each
// list optional.
type AckRequest struct {
	// Ack lists tokens of events handled.
	Ack []string `json:"ack,omitempty"`
	// Nak lists events to hand out again, after a delay.
	Nak []NakRequest `json:"nak,omitempty"`
	// InProgress lists events whose ack wait restarts.
	InProgress []string `json:"in_progress,omitempty"`
	// Term lists events to give up on (sent to DEAD with the reason).
	Term []TermRequest `json:"term,omitempty"`
}

// NakRequest is one nak.
type NakRequest struct {
	Token   string `json:"token"`
	DelayMS int64  `json:"delay_ms,omitempty"`
}

// TermRequest is one term.
type TermRequest struct {
	Token  string `json:"token"`
	Reason string `json:"reason,omitempty"`
}

// AckResponse answers consume.<group>.ack: one result per token, in the
// order ack, nak, in_progress, term, each list in its order.
type AckResponse struct {
	// Settled counts the tokens that took effect.
	Settled int `json:"settled"`
	// Results holds each token's outcome.
	Results []AckResult `json:"results"`
}

// AckResult is one token's outcome; Error is set when it settled nothing.
type AckResult struct {
	Token string       `json:"token"`
	Op    string       `json:"op"`
	OK    bool         `json:"ok"`
	Error *ResultError `json:"error,omitempty"`
}

// ResultError says why a token settled nothing, with the service's error
// codes: bad_request (not a token of this group), conflict (settled
// already, or its partition moved to another member: the event is handed
// out again), unavailable (DEAD could not store it; retry).
type ResultError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// settleItem is one token to settle.
type settleItem struct {
	op     settleOp
	token  string
	delay  time.Duration
	reason string
}

var opNames = map[settleOp]string{opAck: "ack", opNak: "nak", opInProgress: "in_progress", opTerm: "term"}

func (s *Service) handleAck(ctx context.Context, r *service.Request) (any, error) {
	group, err := groupOf(r.Subject())
	if err != nil {
		return nil, err
	}
	var req AckRequest
	if err := r.DecodeDocument(&req); err != nil {
		return nil, err
	}
	n := len(req.Ack) + len(req.Nak) + len(req.InProgress) + len(req.Term)
	switch {
	case n == 0:
		return nil, service.Errorf(service.CodeBadRequest, `no tokens: send {"ack":[token..],"nak":[{"token":..,"delay_ms":..}],"in_progress":[..],"term":[{"token":..,"reason":..}]}`)
	case n > MaxSettle:
		return nil, service.Errorf(service.CodeTooLarge, "%d tokens, at most %d per request", n, MaxSettle)
	}
	items := make([]settleItem, 0, n)
	for _, t := range req.Ack {
		items = append(items, settleItem{op: opAck, token: t})
	}
	for _, t := range req.Nak {
		d := time.Duration(t.DelayMS) * time.Millisecond
		if t.DelayMS < 0 || d > MaxNakDelay {
			return nil, service.Errorf(service.CodeBadRequest, "nak delay_ms %d: want 0 to %d", t.DelayMS, MaxNakDelay.Milliseconds())
		}
		items = append(items, settleItem{op: opNak, token: t.Token, delay: d})
	}
	for _, t := range req.InProgress {
		items = append(items, settleItem{op: opInProgress, token: t})
	}
	for _, t := range req.Term {
		if len(t.Reason) > 1024 {
			return nil, service.Errorf(service.CodeBadRequest, "term reason of %d bytes: at most 1024", len(t.Reason))
		}
		items = append(items, settleItem{op: opTerm, token: t.Token, reason: t.Reason})
	}
	results := make([]AckResult, len(items))
	self := s.svc.ID()
	others := map[string][]int{} // member -> indexes of its tokens
	var m *Member
	for i, it := range items {
		results[i] = AckResult{Token: it.token, Op: opNames[it.op]}
		tok, err := ParseToken(it.token)
		switch {
		case err != nil:
			results[i].Error = settleError(err)
			continue
		case tok.Group != group:
			results[i].Error = settleError(fmt.Errorf("%w: token of group %s sent to group %s", ErrWrongGroup, tok.Group, group))
			continue
		case tok.Member != self:
			if r.Header().Get(forwardedHeader) != "" {
				results[i].Error = settleError(fmt.Errorf("%w: %s", ErrOtherMember, tok.Member))
			} else {
				others[tok.Member] = append(others[tok.Member], i)
			}
			continue
		}
		if m == nil {
			if m, err = s.member(ctx, group); err != nil {
				return nil, err
			}
		}
		if err := m.settle(ctx, it.token, it.op, it.delay, it.reason); err != nil {
			results[i].Error = settleError(err)
			continue
		}
		results[i].OK = true
	}
	for member, idx := range others {
		s.forward(ctx, group, member, items, idx, results)
	}
	out := AckResponse{Results: results}
	for _, res := range results {
		if res.OK {
			out.Settled++
		}
	}
	return out, nil
}

// forward settles the tokens items[idx] at the instance that handed them
// out, on its instance subject, and fills their results.
func (s *Service) forward(ctx context.Context, group, member string, items []settleItem, idx []int, results []AckResult) {
	var req AckRequest
	for _, i := range idx {
		it := items[i]
		switch it.op {
		case opAck:
			req.Ack = append(req.Ack, it.token)
		case opNak:
			req.Nak = append(req.Nak, NakRequest{Token: it.token, DelayMS: it.delay.Milliseconds()})
		case opInProgress:
			req.InProgress = append(req.InProgress, it.token)
		case opTerm:
			req.Term = append(req.Term, TermRequest{Token: it.token, Reason: it.reason})
		}
	}
	fail := func(e *ResultError) {
		for _, i := range idx {
			results[i].Error = e
		}
	}
	b, err := service.JSON.Encode(req)
	if err != nil {
		fail(&ResultError{service.CodeInternal, "encode forwarded settlement: " + err.Error()})
		return
	}
	msg := nats.NewMsg(streams.InstanceSubject(s.svc.MicroName(), member, streams.ConsumeSubject(group, "ack")))
	msg.Data = b
	msg.Header.Set(forwardedHeader, "1")
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reply, err := s.opts.Conn.RequestMsgWithContext(fctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			fail(settleError(fmt.Errorf("%w: member %s is gone; its partitions' events are handed out again by their new owners", ErrStale, member)))
			return
		}
		fail(&ResultError{service.CodeUnavailable, fmt.Sprintf("settle at member %s: %v", member, err)})
		return
	}
	if e := service.ParseError(service.JSON, reply.Data); e != nil {
		fail(&ResultError{e.Code, e.Message})
		return
	}
	var resp AckResponse
	if err := service.JSON.DecodeLenient(reply.Data, &resp); err != nil || len(resp.Results) != len(idx) {
		fail(&ResultError{service.CodeInternal, fmt.Sprintf("member %s answered %d results for %d tokens", member, len(resp.Results), len(idx))})
		return
	}
	// The forwarded request lists the tokens by op in the same order as
	// items does, so its results line up with idx.
	for k, i := range idx {
		results[i] = resp.Results[k]
	}
}

// settleError maps a settlement error to a token's result error.
func settleError(err error) *ResultError {
	code := service.CodeUnavailable
	switch {
	case errors.Is(err, ErrBadToken), errors.Is(err, ErrWrongGroup):
		code = service.CodeBadRequest
	case errors.Is(err, ErrStale), errors.Is(err, ErrSettled), errors.Is(err, ErrOtherMember):
		code = service.CodeConflict
	}
	return &ResultError{Code: code, Message: err.Error()}
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
	if req.AckWaitMS < 0 || req.AckWaitMS > MaxNakDelay.Milliseconds() {
		return nil, service.Errorf(service.CodeBadRequest, "ack_wait_ms %d: want 100 to %d", req.AckWaitMS, MaxNakDelay.Milliseconds())
	}
	g := GroupConfig{Name: group, Filter: req.Filter, Partitions: req.Partitions, MaxDeliver: req.MaxDeliver, AckWait: time.Duration(req.AckWaitMS) * time.Millisecond}
	g.defaults()
	if err := g.validate(); err != nil {
		return nil, service.Errorf(service.CodeBadRequest, "%v", err)
	}
	got, err := CreateGroup(ctx, s.store, g)
	if err != nil {
		return nil, groupError(group, err)
	}
	return infoOf(got), nil
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
