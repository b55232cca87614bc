package consumebench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/streams"
)

// Fanout is the floor of any group whose members each receive every
// message of the group's filter: Members ordered consumers, each on a
// connection of its own as a member is, read every message of the
// envelope events and do nothing with them (no decoding, no partitions,
// no settlement). A group member must receive every message as long as a
// message's partitions are known from its headers only (an event's key is
// its topic or its Platform-Key header, and the partition count is the
// group's): JetStream filters deliveries by subject alone. The row's rate
// counts the events once, as the group rows do; timed from the
// consumers' creation to the last message of the slowest one.
func (r *Runner) Fanout(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: fmt.Sprintf("consume/fanout-%d-raw", r.o.Members)}
	n := int64(r.o.Events)
	c0, t0 := cpuNow(), time.Now()
	errs := make([]error, r.o.Members)
	msgs := make([]int64, r.o.Members)
	var wg sync.WaitGroup
	for i := range r.o.Members {
		wg.Go(func() { msgs[i], errs[i] = r.readAll(ctx) })
	}
	wg.Wait()
	finish(&res, n, time.Since(t0), c0.since())
	for _, err := range errs {
		if err != nil {
			return res, err
		}
	}
	res.Extra["messages_each"] = float64(msgs[0])
	return res, nil
}

// readAll reads every message under the envelope prefix with an ordered
// consumer on a connection of its own, and returns how many it read.
func (r *Runner) readAll(ctx context.Context) (int64, error) {
	nc, err := r.t.Connect()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	cons, err := js.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{FilterSubjects: []string{envPrefix + ">"}})
	if err != nil {
		return 0, err
	}
	// The reader's heartbeat, as a member's reader has.
	it, err := cons.Messages(jetstream.PullHeartbeat(readerHeartbeat))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var got int64
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return got, fmt.Errorf("fanout consumer: after %d messages: %w", got, err)
		}
		got++
		md, err := msg.Metadata()
		if err != nil {
			return got, err
		}
		if md.NumPending == 0 {
			return got, nil
		}
	}
}

// readerHeartbeat is the heartbeat of a member's reader
// (consume.readerHeartbeat).
const readerHeartbeat = 500 * time.Millisecond
