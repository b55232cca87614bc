package consume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

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
	items, err := req.items()
	if err != nil {
		return nil, err
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

// items checks a decoded AckRequest and lists its tokens to settle, in
// the order Ack, Nak, InProgress, Term. Failures are bad_request or
// too_large *service.Errors.
func (req AckRequest) items() ([]settleItem, error) {
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
		// Bounded in milliseconds, before a large value wraps around
		// in a Duration.
		if t.DelayMS < 0 || t.DelayMS > MaxNakDelay.Milliseconds() {
			return nil, service.Errorf(service.CodeBadRequest, "nak delay_ms %d: want 0 to %d", t.DelayMS, MaxNakDelay.Milliseconds())
		}
		items = append(items, settleItem{op: opNak, token: t.Token, delay: time.Duration(t.DelayMS) * time.Millisecond})
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
	return items, nil
}

// forward settles the tokens items[idx] at the instance that handed them
// out, on its instance subject, and fills their results.
func (s *Service) forward(ctx context.Context, group, member string, items []settleItem, idx []int, results []AckResult) {
	req := requestOf(items, idx)
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

// requestOf is the AckRequest that settles items[idx], in idx's order
// within each op.
func requestOf(items []settleItem, idx []int) AckRequest {
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
	return req
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
