package detector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector/accrual"
	"github.com/platform/platform/streams"
)

// Outbox is what one evaluation gives the active detector to publish, in
// two groups published in order: Transitions to stream DETECTOR first,
// then Records to KV MEMBERS. Every message carries a message id (the
// Nats-Msg-Id header), so publishing one again, after an acknowledgement
// was lost or during a handover, stores it once.
type Outbox struct {
	// Transitions are the state changes, on streams.DetectorSubject, as
	// JSON.
	Transitions []*nats.Msg
	// Records are the member records under their MEMBERS keys, and KV
	// deletes of forgotten members.
	Records []*nats.Msg
}

// Len returns how many messages the outbox holds.
func (o Outbox) Len() int { return len(o.Transitions) + len(o.Records) }

// Messages turns one evaluation into what the active detector publishes:
// each transition to stream DETECTOR, each record to KV MEMBERS under its
// key, each forgotten key as a KV delete. A record that cannot be encoded
// is left out and named in the error; the rest are returned.
func Messages(res accrual.TickResult) (Outbox, error) {
	out := Outbox{
		Transitions: make([]*nats.Msg, 0, len(res.Transitions)),
		Records:     make([]*nats.Msg, 0, len(res.Writes)+len(res.Deletes)),
	}
	var errs []error
	for _, c := range res.Transitions {
		b, err := json.Marshal(c.Transition)
		if err != nil {
			errs = append(errs, fmt.Errorf("encode transition of %s: %w", c.Key(), err))
			continue
		}
		m := nats.NewMsg(streams.DetectorSubject(string(c.State), c.Service, c.Instance))
		m.Data = b
		m.Header.Set(service.ContentTypeHeader, service.ContentTypeJSON)
		m.Header.Set(jetstream.MsgIDHeader, msgID(c))
		out.Transitions = append(out.Transitions, m)
	}
	// A record's id names the evaluation that wrote it: a retry of the
	// same write is dropped, a later write of the same key is not.
	at := strconv.FormatInt(res.At.UnixMilli(), 10)
	for _, w := range res.Writes {
		b, err := json.Marshal(w)
		if err != nil {
			errs = append(errs, fmt.Errorf("encode member %s: %w", w.Key(), err))
			continue
		}
		m := nats.NewMsg(streams.KVSubject(streams.BucketMembers, w.Key()))
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, w.Key()+"."+string(w.State)+"."+at)
		out.Records = append(out.Records, m)
	}
	for _, k := range res.Deletes {
		m := nats.NewMsg(streams.KVSubject(streams.BucketMembers, k))
		m.Header.Set(streams.KVOperationHeader, streams.KVOperationDelete)
		m.Header.Set(jetstream.MsgIDHeader, k+".del."+at)
		out.Records = append(out.Records, m)
	}
	return out, errors.Join(errs...)
}

// msgID names a transition the same on every detector that derives it:
// the instance, the new state, the sequence of its last heartbeat and the
// arrival of that heartbeat to a tenth of a second (sequences restart with
// the process; the time tells incarnations apart).
func msgID(c accrual.Change) string {
	return c.Key() + "." + string(c.State) + "." + strconv.FormatUint(c.Seq, 10) + "." +
		strconv.FormatInt(c.LastSeen.UnixMilli()/100, 10)
}

// writer publishes outboxes and holds each message until JetStream
// acknowledges it, retrying the rest with backoff. Transitions go first
// and are all acknowledged before any record is sent: a state in MEMBERS
// then implies its transition is in DETECTOR, so a standby that takes
// over (and derives transitions from what MEMBERS holds) republishes
// whatever an interrupted writer left out.
type writer struct {
	js  jetstream.JetStream
	log *slog.Logger
	// holds reports whether this detector may still publish (holds the
	// lease); when it stops, pending messages are left to the new holder.
	holds func() bool
	// ackWait bounds the wait for one round of acknowledgements.
	ackWait time.Duration
	backoff jsapi.Backoff
	// failed counts publishes not acknowledged (each attempt).
	failed func()
}

// errLeaseLost is why a writer stops retrying when this detector is no
// longer active.
var errLeaseLost = errors.New("lease lost")

// publish sends an outbox and returns once every message is acknowledged,
// or with an error wrapping jsapi.ErrGaveUp when ctx ends or the lease is
// lost first. Failures are logged at warning level as they happen.
func (w *writer) publish(ctx context.Context, out Outbox) error {
	if err := w.confirm(ctx, "transitions", out.Transitions); err != nil {
		return err
	}
	return w.confirm(ctx, "records", out.Records)
}

// confirm publishes msgs asynchronously and republishes the ones not
// acknowledged until none is left.
func (w *writer) confirm(ctx context.Context, what string, msgs []*nats.Msg) error {
	pending := msgs
	for attempt := 0; len(pending) > 0; attempt++ {
		var last error
		pending, last = w.round(ctx, pending)
		if len(pending) == 0 {
			if attempt > 0 {
				w.log.Info("writes acknowledged after retries", "what", what, "attempts", attempt+1)
			}
			return nil
		}
		wait := w.backoff.Delay(attempt)
		w.log.Warn("writes not acknowledged: retrying", "what", what, "pending", len(pending),
			"attempt", attempt+1, "wait", wait, "err", last)
		if !w.holds() {
			return fmt.Errorf("publish %d %s: %w: %w", len(pending), what, jsapi.ErrGaveUp, errLeaseLost)
		}
		if err := jsapi.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("publish %d %s: %w: %w (last attempt: %w)", len(pending), what, jsapi.ErrGaveUp, err, last)
		}
	}
	return nil
}

// round publishes msgs once and returns those not acknowledged within
// ackWait, with the last error seen.
func (w *writer) round(ctx context.Context, msgs []*nats.Msg) ([]*nats.Msg, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	var failed []*nats.Msg
	var last error
	for i, m := range msgs {
		// The message id is in the header already; a republished message
		// keeps the same one.
		f, err := w.js.PublishMsgAsync(m)
		if err != nil {
			w.failed()
			failed, last = append(failed, m), err
			continue
		}
		futures[i] = f
	}
	timer := time.NewTimer(w.ackWait)
	defer timer.Stop()
	expired := false
	for i, f := range futures {
		if f == nil {
			continue
		}
		if expired {
			// Past the deadline only what is already acknowledged counts.
			select {
			case <-f.Ok():
				continue
			case err := <-f.Err():
				last = err
			default:
			}
			w.failed()
			failed = append(failed, msgs[i])
			continue
		}
		select {
		case <-f.Ok():
			continue
		case err := <-f.Err():
			last = err
		case <-timer.C:
			expired = true
			last = fmt.Errorf("no acknowledgement within %s: %w", w.ackWait, context.DeadlineExceeded)
		case <-ctx.Done():
			expired = true
			last = ctx.Err()
		}
		w.failed()
		failed = append(failed, msgs[i])
	}
	return failed, last
}
