package replicator

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// pending is one accepted event until its outcome.
type pending struct {
	msg      Message
	level    Level
	size     int
	accepted time.Time
	fut      *Future
	done     func(Ack, error)
	ep       *epoch
}

// batch is a group of accepted events sent together.
type batch struct {
	events []*pending
	bytes  int
	first  time.Time
}

// batcher accepts events and groups them into batches of at most
// maxEvents events and maxBytes bytes. The sender takes a batch when it
// is full, when it has lingered long enough, or at once on a flush; while
// the sender is busy the open batch keeps growing. Accepted bytes not yet
// taken are capped at maxBuffered: beyond it add waits or refuses
// (back-pressure). It also keeps the flush epochs.
type batcher struct {
	maxEvents   int
	maxBytes    int
	maxBuffered int
	linger      time.Duration
	// in counts accepted events, by level.
	in [All + 1]prometheus.Counter

	mu       sync.Mutex
	open     *batch
	sealed   []*batch
	buffered int
	bufWait  chan struct{} // closed when buffer space may have been freed
	closed   bool
	flushNow bool
	ep       *epoch   // the open epoch: events accepted since the last flush
	epochs   []*epoch // sealed epochs with events still unresolved
	wake     chan struct{}
	// full wakes a sender waiting for a batch slot when a batch fills,
	// and only then: it has nothing else to do.
	full chan struct{}
}

func newBatcher(cfg config, m *metrics) *batcher {
	b := &batcher{
		maxEvents:   cfg.maxBatchEvents,
		maxBytes:    cfg.maxBatchBytes,
		maxBuffered: cfg.maxBuffered,
		linger:      cfg.linger,
		open:        &batch{},
		ep:          newEpoch(),
		wake:        make(chan struct{}, 1),
		full:        make(chan struct{}, 1),
	}
	for l := Async; l <= All; l++ {
		b.in[l] = m.eventsIn.WithLabelValues(l.String())
	}
	return b
}

// signal wakes the sender.
func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// add adds e to the open batch. While the buffer is full it waits for room
// until ctx ends, or with wait false returns ErrBufferFull. After close it
// returns ErrClosed.
func (b *batcher) add(ctx context.Context, e *pending, wait bool) error {
	subject := e.msg.Subject
	b.mu.Lock()
	for !b.closed && b.buffered > 0 && b.buffered+e.size > b.maxBuffered {
		if !wait {
			b.mu.Unlock()
			return fmt.Errorf("publish %s: %w", subject, ErrBufferFull)
		}
		if b.bufWait == nil {
			b.bufWait = make(chan struct{})
		}
		ch := b.bufWait
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("publish %s: waiting for buffer space: %w", subject, ctx.Err())
		}
		b.mu.Lock()
	}
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("publish %s: %w", subject, ErrClosed)
	}
	now := time.Now()
	e.accepted = now
	e.ep = b.ep
	b.ep.add()
	o := b.open
	sealed := false
	if len(o.events) > 0 && (len(o.events) >= b.maxEvents || o.bytes+e.size > b.maxBytes) {
		b.sealed = append(b.sealed, o)
		o = &batch{}
		b.open = o
		sealed = true
	}
	if len(o.events) == 0 {
		o.first = now
	}
	o.events = append(o.events, e)
	o.bytes += e.size
	b.buffered += e.size
	b.mu.Unlock()
	b.in[e.level].Inc()
	b.signal()
	if sealed {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
	return nil
}

// take returns the next batch to send, waiting for one (and for the
// linger time) until stop is closed; then it returns nil. With slots (the
// batches in flight, when capped) a batch still open is taken only once
// take holds a slot, so it keeps growing while the batches in flight are
// stored: the group commit. A full batch cannot grow, so it is taken at
// once without a slot, unless one is already held. grouped reports
// whether the batch holds a slot.
func (b *batcher) take(stop <-chan struct{}, slots chan struct{}) (out *batch, grouped bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	held := false
	defer func() {
		if held && out == nil {
			<-slots
		}
	}()
	for {
		b.mu.Lock()
		var lingerLeft time.Duration
		var slotWait chan<- struct{}
		switch {
		case len(b.sealed) > 0:
			out = b.sealed[0]
			b.sealed[0] = nil
			b.sealed = b.sealed[1:]
		case len(b.open.events) > 0:
			lingerLeft = b.linger - time.Since(b.open.first)
			if lingerLeft > 0 && !b.flushNow && !b.closed {
				break
			}
			if slots != nil && !held {
				select {
				case slots <- struct{}{}:
					held = true
				default:
					slotWait = slots
					lingerLeft = 0
				}
			}
			if slots == nil || held {
				out = b.open
				b.open = &batch{}
			}
		default:
			b.flushNow = false
		}
		if out != nil {
			b.buffered -= out.bytes
			if b.bufWait != nil {
				close(b.bufWait)
				b.bufWait = nil
			}
			b.mu.Unlock()
			return out, held
		}
		b.mu.Unlock()
		var tc <-chan time.Time
		if lingerLeft > 0 {
			if timer == nil {
				timer = time.NewTimer(lingerLeft)
			} else {
				timer.Reset(lingerLeft)
			}
			tc = timer.C
		}
		if slotWait != nil {
			select {
			case <-b.full:
			case slotWait <- struct{}{}:
				held = true
			case <-stop:
				return nil, false
			}
			continue
		}
		select {
		case <-b.wake:
		case <-tc:
		case <-stop:
			return nil, false
		}
	}
}

// flush makes the sender send what is buffered without lingering, and
// returns the epochs to wait for: every event accepted before the call
// belongs to one of them.
func (b *batcher) flush() []*epoch {
	b.mu.Lock()
	b.flushNow = true
	old := b.ep
	b.ep = newEpoch()
	old.seal()
	wait := append(b.epochs[:0:0], b.epochs...)
	wait = append(wait, old)
	live := b.epochs[:0]
	for _, e := range wait {
		if !e.finished() {
			live = append(live, e)
		}
	}
	b.epochs = live
	b.mu.Unlock()
	b.signal()
	return wait
}

// close stops accepting events and releases every add waiting for room.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	if b.bufWait != nil {
		close(b.bufWait)
		b.bufWait = nil
	}
	b.mu.Unlock()
}

// drain removes and returns every event not yet taken.
func (b *batcher) drain() []*pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	var rest []*pending
	for _, s := range b.sealed {
		rest = append(rest, s.events...)
	}
	rest = append(rest, b.open.events...)
	b.sealed, b.open = nil, &batch{}
	return rest
}

// epoch counts the events accepted between two flushes.
type epoch struct {
	n    atomic.Int64
	done chan struct{}
}

func newEpoch() *epoch {
	e := &epoch{done: make(chan struct{})}
	e.n.Store(1) // the open epoch's own reference, dropped by seal
	return e
}

func (e *epoch) add()  { e.n.Add(1) }
func (e *epoch) seal() { e.release() }
func (e *epoch) release() {
	if e.n.Add(-1) == 0 {
		close(e.done)
	}
}
func (e *epoch) finished() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
