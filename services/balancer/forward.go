package balancer

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/streams"
)

// forwarded is a request sent by forward whose answer the router's reply
// subscription awaits.
type forwarded struct {
	t        *ticket
	in       *instance
	start    time.Time
	e        *list.Element
	deadline time.Time
	timer    *time.Timer
	done     func(*nats.Msg, error)
}

// forward sends an admitted request to its chosen instance without a
// goroutine waiting for it: the answer comes on the router's own reply
// subscription, which calls done with it; a timer calls done with
// ErrTimeout at deadline. done is called exactly once, on another
// goroutine, unless forward returns false: the request is for the queue
// group or may be hedged, which complete handles; the router was not
// started; or it is stopping. This spares a proxied request a goroutine,
// a context, nats.go's request map and two goroutine hand-offs, what
// most of the proxy's hop cost under load was.
func (r *Router) forward(t *ticket, deadline time.Time, done func(*nats.Msg, error)) bool {
	if t.in == nil {
		return false
	}
	if _, hedge := r.hedge.delay(t.m.Subject, t.in); hedge && len(t.healthy) >= 2 {
		return false
	}
	f := &forwarded{t: t, in: t.in, deadline: deadline, done: done}
	out := &nats.Msg{
		Subject: streams.InstanceSubject(f.in.service, f.in.id, t.m.Subject),
		Header:  t.m.Header,
		Data:    t.m.Data,
	}
	r.fmu.Lock()
	if r.inbox == "" {
		r.fmu.Unlock()
		return false
	}
	r.ftok++
	tok := strconv.FormatUint(r.ftok, 36)
	out.Reply = r.inbox + tok
	f.start = time.Now()
	f.e = f.in.begin(f.start)
	r.pending[tok] = f
	// Set under fmu: settle reads it only after taking f out of pending.
	f.timer = time.AfterFunc(deadline.Sub(f.start), func() { r.settle(tok, nil, context.DeadlineExceeded) })
	r.fmu.Unlock()
	if err := r.opts.Conn.PublishMsg(out); err != nil {
		r.settle(tok, nil, err)
	}
	return true
}

// onReply takes an answer to a forwarded request; inbox is the prefix
// of the reply subjects.
func (r *Router) onReply(inbox string, m *nats.Msg) {
	tok := strings.TrimPrefix(m.Subject, inbox)
	// What nats.go's own requests check: the server answers a request
	// nobody subscribes to with an empty 503 status message.
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		r.settle(tok, nil, nats.ErrNoResponders)
		return
	}
	r.settle(tok, m, nil)
}

// settle ends forwarded request tok with its answer or err; a second
// call (an answer racing the deadline) does nothing.
func (r *Router) settle(tok string, resp *nats.Msg, err error) {
	r.fmu.Lock()
	f, ok := r.pending[tok]
	delete(r.pending, tok)
	r.fmu.Unlock()
	if ok {
		r.finish(f, resp, err)
	}
}

// finish ends forwarded request f, taken out of pending. An instance
// that is gone is dropped and the request tried on another, as complete
// does.
func (r *Router) finish(f *forwarded, resp *nats.Msg, err error) {
	f.timer.Stop()
	f.in.answered(f.e, f.start, time.Now(), err, false)
	if errors.Is(err, nats.ErrNoResponders) {
		// Rare: the instance left since discovery. Try the others on a
		// goroutine of its own.
		go func() {
			defer f.t.release()
			ctx, cancel := context.WithDeadline(context.Background(), f.deadline)
			defer cancel()
			r.drop(f.in)
			exclude := []*instance{f.in}
			in, healthy, err := r.choose(f.t.all, exclude)
			if err != nil {
				f.done(nil, fmt.Errorf("request %s: %w", f.t.m.Subject, err))
				return
			}
			f.done(r.attempt(ctx, f.t, in, healthy, exclude))
		}()
		return
	}
	f.t.release()
	f.done(resp, wrapSendErr(f.t.m.Subject, f.in, err))
}

// startForwarding subscribes the router's reply subject for forward.
func (r *Router) startForwarding() error {
	inbox := r.opts.Conn.NewInbox() + "."
	sub, err := r.opts.Conn.Subscribe(inbox+"*", func(m *nats.Msg) { r.onReply(inbox, m) })
	if err != nil {
		return fmt.Errorf("subscribe replies: %w", err)
	}
	// Bounded by MaxInFlight per service already.
	_ = sub.SetPendingLimits(-1, -1)
	r.fmu.Lock()
	r.inbox, r.fsub = inbox, sub
	r.fmu.Unlock()
	return nil
}

// stopForwarding takes no more forwarded requests and ends those still
// awaiting an answer with context.Canceled.
func (r *Router) stopForwarding() {
	r.fmu.Lock()
	sub, pending := r.fsub, r.pending
	r.inbox, r.fsub, r.pending = "", nil, map[string]*forwarded{}
	r.fmu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	for _, f := range pending {
		r.finish(f, nil, context.Canceled)
	}
}
