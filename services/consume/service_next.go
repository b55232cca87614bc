package consume

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/replicator"
)

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
		Time: d.Event.Time, Partition: d.Partition, Attempt: d.Attempt, Token: d.Token(),
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
	// One spelling, the service's: no sign, no leading zeros, no
	// negative index.
	if ev.Pos.Index < 0 || positionText(ev.Pos) != w.Position {
		return ev, fmt.Errorf("consume: event position %q: want seq or seq:index, as the service writes them", w.Position)
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
	n, wait, err := req.params()
	if err != nil {
		return nil, err
	}
	m, err := s.member(ctx, group)
	if err != nil {
		return nil, err
	}
	ds, err := m.Next(ctx, n, wait)
	if err != nil {
		return nil, service.Errorf(service.CodeTimeout, "%v", err)
	}
	out := NextResponse{Events: make([]WireEvent, len(ds))}
	for i, d := range ds {
		out.Events[i] = wire(d)
	}
	return out, nil
}

// params checks a decoded NextRequest: the most events to hand out (0
// takes DefaultNextMax) and how long to wait for a first one. Failures
// are bad_request *service.Errors.
func (req NextRequest) params() (n int, wait time.Duration, err error) {
	switch {
	case req.Max == 0:
		req.Max = DefaultNextMax
	case req.Max < 0 || req.Max > MaxNextMax:
		return 0, 0, service.Errorf(service.CodeBadRequest, "max %d: want 1 to %d", req.Max, MaxNextMax)
	}
	// Bounded in milliseconds: a large wait_ms multiplied into a
	// Duration first would wrap around, to a negative wait or a short one.
	if req.WaitMS < 0 || req.WaitMS > MaxNextWait.Milliseconds() {
		return 0, 0, service.Errorf(service.CodeBadRequest, "wait_ms %d: want 0 to %d", req.WaitMS, MaxNextWait.Milliseconds())
	}
	return req.Max, time.Duration(req.WaitMS) * time.Millisecond, nil
}
