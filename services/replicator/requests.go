package replicator

import (
	"sync"
	"time"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// DefaultRequestTimeout is how long the ingest service lets a request
// wait for its event to reach its level before it answers unavailable:
// shorter than the usual client timeouts (the stock CLI waits 5 s), so
// the requester hears why instead of timing out.
const DefaultRequestTimeout = 2 * time.Second

// requestLane is where requests waiting for their level queue: a
// Publisher of their own, so that they never wait behind the
// fire-and-forget backlog of the main one, and the arrival times of those
// still waiting, for admission.
//
// A request is refused at once (unavailable, with retry_after_ms) when the
// oldest one still waiting has waited half its time or more: the lane is
// not keeping up, and a new request queued behind it would most likely
// time out. A request admitted and not answered within its time is
// answered unavailable then.
type requestLane struct {
	pub *Publisher

	mu      sync.Mutex
	waiting []*laneEntry // in arrival order; answered ones are trimmed from the front
}

// laneEntry is one request waiting in the lane.
type laneEntry struct {
	start    time.Time
	answered bool
}

// oldestWait returns how long the oldest request still waiting has
// waited, trimming answered ones from the front.
func (l *requestLane) oldestWait(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.waiting) && l.waiting[i].answered {
		i++
	}
	if i > 0 {
		l.waiting = append(l.waiting[:0], l.waiting[i:]...)
	}
	if len(l.waiting) == 0 {
		return 0
	}
	return now.Sub(l.waiting[0].start)
}

func (l *requestLane) enter(now time.Time) *laneEntry {
	e := &laneEntry{start: now}
	l.mu.Lock()
	l.waiting = append(l.waiting, e)
	l.mu.Unlock()
	return e
}

func (l *requestLane) leave(e *laneEntry) {
	l.mu.Lock()
	e.answered = true
	l.mu.Unlock()
}

// handleRequest stores a request's event at quorum or all through the
// request lane and answers once it is there, or unavailable (with
// retry_after_ms) when it cannot be there in time: at once when the lane
// is backed up, else when its time runs out.
func (s *Service) handleRequest(r *service.Request, ev Message, timeout time.Duration) {
	lane := s.requests
	now := time.Now()
	if wait := lane.oldestWait(now); wait >= timeout/2 {
		s.refuse(r, service.Errorf(service.CodeUnavailable,
			"ingest requests are waiting %s to be stored, longer than half of this request's %s: retry later", wait.Round(time.Millisecond), timeout).
			With("reason", "backlog").With("retry_after_ms", max(1, wait.Milliseconds())))
		return
	}
	e := lane.enter(now)
	// The timer answers if the event is late; the Publisher's callback
	// otherwise. Request answers once, whichever comes first.
	timer := time.AfterFunc(timeout, func() {
		lane.leave(e)
		s.m.errors.WithLabelValues("deadline").Inc()
		r.Fail(service.Errorf(service.CodeUnavailable,
			"event not stored at level %s within %s; it may still be stored: retry with the same Nats-Msg-Id to store it once", ev.Level, timeout).
			With("reason", "deadline").With("retry_after_ms", max(1, timeout.Milliseconds()/2)))
	})
	err := lane.pub.TryPublish(ev, func(ack Ack, err error) {
		timer.Stop()
		lane.leave(e)
		if err != nil {
			s.m.errors.WithLabelValues(reasonOf(err)).Inc()
			r.Fail(publishError(err))
			return
		}
		a := IngestAck{Stream: ack.Stream, Seq: ack.Seq, Duplicate: ack.Duplicate}
		if ack.Count > 1 {
			i := ack.Index
			a.Index = &i
		}
		r.Respond(a)
	})
	if err != nil {
		timer.Stop()
		lane.leave(e)
		s.refuse(r, publishError(err))
	}
}

// requestTimeout is the time a request may wait for its answer: the
// service's RequestTimeout, shortened by the Platform-Timeout header
// (streams.TimeoutHeader).
func (s *Service) requestTimeout(r *service.Request) (time.Duration, *service.Error) {
	v := r.Header().Get(streams.TimeoutHeader)
	if v == "" {
		return s.opts.RequestTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, service.Errorf(service.CodeBadRequest, "%s %q: use a positive Go duration such as 500ms", streams.TimeoutHeader, v).With("reason", "bad_timeout")
	}
	return min(d, s.opts.RequestTimeout), nil
}
