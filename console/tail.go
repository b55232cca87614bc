package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

const (
	// maxTails bounds the live tails open at once.
	maxTails = 16
	// tailRate bounds the events a second sent to one tail.
	tailRate = 200
	// keepalive is how often an idle tail sends a comment line.
	keepalive = 15 * time.Second
)

// tail streams the events stored from now on as server-sent events,
// read through an ordered consumer of EVENTS (in memory, one replica,
// gone with the tail) that starts at the stream's end.
func (c *Console) tail(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.authorize(w, r); !ok {
		return
	}
	p := c.platform()
	if p == nil {
		fail(w, http.StatusServiceUnavailable, codeUnavailable, "the platform is starting: not connected to NATS yet")
		return
	}
	f, err := parseFilter(r)
	if err != nil {
		failErr(w, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, codeUpstream, "streaming not supported")
		return
	}
	c.mu.Lock()
	if c.tails >= maxTails {
		c.mu.Unlock()
		fail(w, http.StatusTooManyRequests, codeTooMany, fmt.Sprintf("%d live tails are open, the most allowed", maxTails))
		return
	}
	c.tails++
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.tails--; c.mu.Unlock() }()

	ctx := r.Context()
	setup, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	cons, err := p.JS.OrderedConsumer(setup, streams.Events, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.subject}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		failErr(w, err)
		return
	}
	ch := make(chan replicator.Event, tailRate)
	var skipped atomic.Int64 // events left out: the page is told
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		evs, err := replicator.Decode(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
		if err != nil {
			return
		}
		for _, e := range evs {
			if !f.keep(e) {
				continue
			}
			select {
			case ch <- e:
			default:
				skipped.Add(1)
			}
		}
	})
	if err != nil {
		failErr(w, err)
		return
	}
	defer cc.Stop()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": tail of "+f.subject+"\n\n")
	flusher.Flush()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	idle := time.Now()
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-ch:
			if sent >= tailRate {
				skipped.Add(1)
				continue
			}
			b, _ := json.Marshal(newEventView(e))
			if _, err := fmt.Fprintf(w, "event: event\ndata: %s\n\n", b); err != nil {
				return
			}
			flusher.Flush()
			sent++
			idle = time.Now()
		case now := <-tick.C:
			sent = 0
			n := skipped.Swap(0)
			var err error
			switch {
			case n > 0:
				_, err = fmt.Fprintf(w, "event: skipped\ndata: {\"skipped\":%d}\n\n", n)
				idle = now
			case now.Sub(idle) >= keepalive:
				_, err = fmt.Fprint(w, ": keepalive\n\n")
				idle = now
			default:
				continue
			}
			if err != nil {
				return
			}
			flusher.Flush()
		}
	}
}
