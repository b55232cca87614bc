package replicator

import (
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
)

// reasonClosed: a fire-and-forget event arrived while the service stopped.
const reasonClosed = "closed"

// arrival is one fire-and-forget event as it came in.
type arrival struct {
	subject string
	header  nats.Header
	data    []byte
	// r is the micro request it came as, counted in the service's
	// statistics once handled; nil for events taken on the extra intake
	// connections.
	r *service.Request
}

func (a arrival) Subject() string     { return a.subject }
func (a arrival) Header() nats.Header { return a.header }
func (a arrival) Data() []byte        { return a.data }
func (a arrival) HasReply() bool      { return false }
func (a arrival) Reply() string       { return "" }

// bulkLane queues fire-and-forget events between the intake
// subscription's goroutine and the one goroutine that parses and
// publishes them, in arrival order. The intake goroutine only sorts
// arrivals (requests are handled at once, events queued here), so a
// request never waits behind a backlog of events: the backlog builds here,
// where nothing waits for it, bounded in events and bytes; beyond the
// bounds events are dropped and counted as slow_consumer.
type bulkLane struct {
	maxMsgs, maxBytes int

	mu    sync.Mutex
	queue []arrival
	// msgs and bytes count the events queued and those the worker is
	// handling.
	msgs, bytes int
	closed      bool
	wake        chan struct{} // capacity 1: there is work
	done        chan struct{} // closed when the worker has drained the lane after close
}

func newBulkLane(maxMsgs, maxBytes int) *bulkLane {
	return &bulkLane{maxMsgs: maxMsgs, maxBytes: maxBytes, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues r, or returns the reason it was refused.
func (b *bulkLane) push(a arrival) (refused string) {
	n := len(a.data)
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return reasonClosed
	case b.msgs >= b.maxMsgs || b.bytes+n > b.maxBytes && b.msgs > 0:
		b.mu.Unlock()
		return reasonSlowConsumer
	}
	b.queue = append(b.queue, a)
	b.msgs++
	b.bytes += n
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return ""
}

// run hands queued events to handle, in order, until close, then the rest
// and returns.
func (b *bulkLane) run(handle func(arrival)) {
	defer close(b.done)
	var batch []arrival
	for {
		b.mu.Lock()
		batch, b.queue = b.queue, batch[:0]
		closed := b.closed
		b.mu.Unlock()
		n := 0
		for i, a := range batch {
			n += len(a.data)
			handle(a)
			batch[i] = arrival{}
		}
		if len(batch) > 0 {
			b.mu.Lock()
			b.msgs -= len(batch)
			b.bytes -= n
			b.mu.Unlock()
			continue
		}
		if closed {
			return
		}
		<-b.wake
	}
}

// close stops taking events; the worker hands over those queued, then
// exits. Wait on done for it.
func (b *bulkLane) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}
