package replicator

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
)

// unit is one stream message in flight: one event or an envelope.
type unit struct {
	key      uint64
	msg      *nats.Msg
	events   []*pending
	envelope bool
	first    time.Time
	sent     time.Time
	attempts int
	// weight is what the unit holds of the bytes in flight.
	weight int
	// group is the batch the unit was sent with, when batches in flight
	// are capped.
	group *sendGroup
}

// sendGroup counts the units of one batch still in flight; the last to
// settle frees the batch's slot.
type sendGroup struct{ left atomic.Int32 }

// flight tracks the stream messages published and not yet settled: it
// caps them (the pipeline, and optionally the batches), matches each ack
// on the Publisher's inbox to its unit by the reply subject, retries a
// unit whose ack does not come in time or says to try again, and hands
// every unit's outcome to settled exactly once.
type flight struct {
	flightOptions
	nc  *nats.Conn
	sub *nats.Subscription

	slots      chan struct{} // one per message in flight
	batchSlots chan struct{} // nil: batches in flight are not capped
	bytes      *byteGate     // nil: bytes in flight are not capped

	mu       sync.Mutex
	inflight map[uint64]*unit
}

// flightOptions is what a flight tracker is made of.
type flightOptions struct {
	// replyPrefix starts the reply subject of every unit; the rest is the
	// unit's key.
	replyPrefix string
	// maxInFlight caps the messages in flight; maxBatches the batches
	// (0: no cap).
	maxInFlight int
	maxBatches  int
	// maxBytes caps the bytes in flight (0: no cap).
	maxBytes int
	// ackTimeout bounds one attempt; retryDeadline all attempts of a unit.
	ackTimeout    time.Duration
	retryDeadline time.Duration
	// burst is how many messages are sent back to back.
	burst int
	m     *metrics
	log   *slog.Logger
	// stop is closed when the Publisher stops.
	stop <-chan struct{}
	// settled receives each unit's outcome, from the tracker's goroutines.
	settled func(u *unit, ack Ack, err error)
}

// newFlight subscribes to the acks on o.replyPrefix + "*".
func newFlight(nc *nats.Conn, o flightOptions) (*flight, error) {
	f := &flight{
		flightOptions: o,
		nc:            nc,
		slots:         make(chan struct{}, o.maxInFlight),
		inflight:      make(map[uint64]*unit, o.maxInFlight),
	}
	if o.maxBatches > 0 {
		f.batchSlots = make(chan struct{}, o.maxBatches)
	}
	if o.maxBytes > 0 {
		f.bytes = newByteGate(o.maxBytes)
	}
	sub, err := nc.Subscribe(o.replyPrefix+"*", f.onAck)
	if err != nil {
		return nil, fmt.Errorf("subscribe to acks: %w", err)
	}
	// Acks are bounded by the pipeline depth; never drop one as a slow consumer.
	_ = sub.SetPendingLimits(-1, -1)
	f.sub = sub
	return f, nil
}

// close stops listening for acks.
func (f *flight) close() { _ = f.sub.Unsubscribe() }

// acquire takes a pipeline slot, or reports false when the Publisher stops.
func (f *flight) acquire() bool {
	select {
	case f.slots <- struct{}{}:
		f.m.inFlightMsgs.Inc()
		return true
	case <-f.stop:
		return false
	}
}

func (f *flight) release() {
	<-f.slots
	f.m.inFlightMsgs.Dec()
}

func (f *flight) releaseBatch() {
	if f.batchSlots != nil {
		<-f.batchSlots
	}
}

// send publishes the units of one batch. The caller holds one pipeline
// slot, taken before the batch (see Publisher.sendLoop), and with grouped
// a batch slot, which the last of the units to settle frees. It reports
// false when the Publisher stops; the units not sent then fail with
// ErrClosed.
func (f *flight) send(units []*unit, grouped bool) bool {
	if grouped {
		g := &sendGroup{}
		g.left.Store(int32(len(units)))
		for _, u := range units {
			u.group = g
		}
	}
	// Send in bursts: take the slots for a group of messages first,
	// then write them back to back. The stream leader then proposes
	// them to RAFT together (one append, one fsync per replica)
	// instead of one by one as acks trickle back.
	held := 1
	for i := 0; i < len(units); {
		n := min(f.burst, len(units)-i)
		for held < n {
			if !f.acquire() {
				for range held {
					f.release()
				}
				for _, rest := range units[i:] {
					f.settle(rest, Ack{}, ErrClosed, false)
				}
				return false
			}
			held++
		}
		now := time.Now()
		for _, u := range units[i : i+n] {
			u.first = now
			if f.bytes != nil && f.bytes.acquire(len(u.msg.Data), f.stop) {
				u.weight = len(u.msg.Data) // else stopping: publish fails u
			}
			f.publish(u)
		}
		i += n
		held = 0
	}
	return true
}

// publish sends one attempt of u. The unit is registered before it is
// sent so that an ack arriving at once finds it.
func (f *flight) publish(u *unit) {
	select {
	case <-f.stop:
		f.finish(u, Ack{}, fmt.Errorf("publish %s: %w", u.msg.Subject, ErrClosed))
		return
	default:
	}
	u.attempts++
	u.sent = time.Now()
	f.mu.Lock()
	f.inflight[u.key] = u
	f.mu.Unlock()
	if err := f.nc.PublishMsg(u.msg); err != nil {
		f.mu.Lock()
		_, mine := f.inflight[u.key]
		delete(f.inflight, u.key)
		f.mu.Unlock()
		if mine {
			f.retry(u, fmt.Errorf("publish: %w", err))
		}
	}
}

var (
	errAckTimeout   = errors.New("no acknowledgement within the ack timeout")
	errNoResponders = errors.New("no stream leader is listening (503 no responders)")
)

// statusNoResponders is the Status header of the server's answer when
// nobody listens on a request's subject (nats.go's noResponders).
const statusNoResponders = "503"

// onAck handles every acknowledgement on the Publisher's inbox.
func (f *flight) onAck(m *nats.Msg) {
	key, err := strconv.ParseUint(m.Subject[len(f.replyPrefix):], 36, 64)
	if err != nil {
		return
	}
	f.mu.Lock()
	u := f.inflight[key]
	delete(f.inflight, key)
	f.mu.Unlock()
	if u == nil {
		return // a late answer to an attempt already retried or finished
	}
	pa, err := parseAck(m)
	if err != nil {
		f.retry(u, err)
		return
	}
	ack := Ack{Stream: pa.Stream, Seq: pa.Seq, Duplicate: pa.Duplicate && u.attempts == 1}
	f.finish(u, ack, nil)
}

// parseAck reads the answer to one publish: a PubAck, an API error (a
// *jetstream.APIError), no responders, or a body that is no answer.
func parseAck(m *nats.Msg) (jsapi.PubAck, error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == statusNoResponders {
		return jsapi.PubAck{}, errNoResponders
	}
	pa, err := jsapi.ParsePubAck(m.Data)
	if err != nil {
		return jsapi.PubAck{}, fmt.Errorf("bad acknowledgement: %w", err)
	}
	if err := pa.Err(); err != nil {
		return jsapi.PubAck{}, err
	}
	return pa, nil
}

// retryBackoff spaces the attempts of one stream message: 25ms doubling up
// to 1s, jittered.
var retryBackoff = jsapi.Backoff{Base: 25 * time.Millisecond, Max: time.Second}

// retry publishes u again after a backoff, or fails it when the error is
// permanent or the deadline would pass. An API error is retried when
// jsapi.IsTransient says another attempt may succeed; any other failure
// (a lost ack, no responders, a connection hiccup) is retried unless the
// connection is closed or the message can never be sent, since message
// ids make a retry idempotent.
func (f *flight) retry(u *unit, cause error) {
	var ae *jetstream.APIError
	if errors.As(cause, &ae) && !jsapi.IsTransient(cause) {
		f.m.errors.WithLabelValues("rejected").Inc()
		f.finish(u, Ack{}, fmt.Errorf("publish %s: %w", u.msg.Subject, cause))
		return
	}
	if errors.Is(cause, nats.ErrConnectionClosed) || errors.Is(cause, nats.ErrMaxPayload) || errors.Is(cause, nats.ErrBadSubject) {
		f.m.errors.WithLabelValues("connection").Inc()
		f.finish(u, Ack{}, fmt.Errorf("publish %s: %w", u.msg.Subject, cause))
		return
	}
	backoff := retryBackoff.Delay(u.attempts - 1)
	if time.Since(u.first)+backoff > f.retryDeadline {
		f.m.errors.WithLabelValues("deadline").Inc()
		f.finish(u, Ack{}, fmt.Errorf("publish %s after %d attempts: %w: %w", u.msg.Subject, u.attempts, ErrDeadline, cause))
		return
	}
	select {
	case <-f.stop:
		f.finish(u, Ack{}, fmt.Errorf("publish %s: %w (last error: %v)", u.msg.Subject, ErrClosed, cause))
		return
	default:
	}
	f.m.retries.Inc()
	f.log.Debug("retrying publish", "subject", u.msg.Subject, "attempt", u.attempts, "err", cause)
	time.AfterFunc(backoff, func() { f.publish(u) })
}

// sweepLoop retries attempts whose ack did not come in time, until the
// Publisher stops.
func (f *flight) sweepLoop() {
	t := time.NewTicker(max(f.ackTimeout/4, 5*time.Millisecond))
	defer t.Stop()
	var expired []*unit
	for {
		select {
		case <-f.stop:
			return
		case now := <-t.C:
			expired = expired[:0]
			f.mu.Lock()
			for k, u := range f.inflight {
				if now.Sub(u.sent) > f.ackTimeout {
					delete(f.inflight, k)
					expired = append(expired, u)
				}
			}
			f.mu.Unlock()
			for _, u := range expired {
				f.retry(u, errAckTimeout)
			}
		}
	}
}

// finish ends u's flight: it frees the pipeline slot and hands the outcome
// on.
func (f *flight) finish(u *unit, ack Ack, err error) { f.settle(u, ack, err, true) }

// settle is finish for a unit that holds a pipeline slot (held) or not.
func (f *flight) settle(u *unit, ack Ack, err error, held bool) {
	if held {
		f.release()
	}
	if u.weight > 0 {
		f.bytes.release(u.weight)
		u.weight = 0
	}
	if u.group != nil && u.group.left.Add(-1) == 0 {
		f.releaseBatch()
	}
	f.settled(u, ack, err)
}

// failAll fails every unit still in flight, after the goroutines stopped.
func (f *flight) failAll(err error) {
	f.mu.Lock()
	units := make([]*unit, 0, len(f.inflight))
	for k, u := range f.inflight {
		delete(f.inflight, k)
		units = append(units, u)
	}
	f.mu.Unlock()
	for _, u := range units {
		f.finish(u, Ack{}, err)
	}
}

// byteGate caps the bytes in flight. One goroutine (the sender) waits on
// it; a message larger than the cap passes when nothing else is in flight.
type byteGate struct {
	max int

	mu    sync.Mutex
	used  int
	freed chan struct{} // closed and replaced at every release
}

func newByteGate(max int) *byteGate { return &byteGate{max: max, freed: make(chan struct{})} }

// acquire takes n bytes, waiting until they fit, or reports false when
// stop is closed first.
func (g *byteGate) acquire(n int, stop <-chan struct{}) bool {
	for {
		g.mu.Lock()
		if g.used == 0 || g.used+n <= g.max {
			g.used += n
			g.mu.Unlock()
			return true
		}
		freed := g.freed
		g.mu.Unlock()
		select {
		case <-freed:
		case <-stop:
			return false
		}
	}
}

func (g *byteGate) release(n int) {
	g.mu.Lock()
	g.used -= n
	close(g.freed)
	g.freed = make(chan struct{})
	g.mu.Unlock()
}
