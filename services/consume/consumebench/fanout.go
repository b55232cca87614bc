package consumebench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// fanoutPartitions is the partition count the decoding fanout row splits
// the events by: the group rows' (consume.DefaultPartitions).
const fanoutPartitions = consume.DefaultPartitions

// Fanout is the floor of any group whose members each receive every
// message of the group's filter: Members ordered consumers, each on a
// connection of its own as a member is, read every message of the
// envelope events. With decode false they do nothing with them; with
// decode true each also does what a member's reading does and no more:
// consumer i owns the partitions p with p mod Members = i (of
// DefaultPartitions), skips a message whose key summary holds none of
// them, decodes the others and partitions their events. No group, no
// settlement, nothing handed out.
//
// A group member must receive every message as long as a message's
// partitions are known from its headers only (an event's key is its
// topic or its Platform-Key header, and the partition count is the
// group's): JetStream filters deliveries by subject alone. The row's rate
// counts the events once, as the group rows do; timed from the
// consumers' creation to the last message of the slowest one.
func (r *Runner) Fanout(ctx context.Context, decode bool) (bench.Result, error) {
	res := bench.Result{Name: "consume/" + r.fanoutRow(decode)}
	n := int64(r.o.Events)
	c0, t0 := cpuNow(), time.Now()
	errs := make([]error, r.o.Members)
	msgs := make([]int64, r.o.Members)
	evs := make([]int64, r.o.Members)
	var wg sync.WaitGroup
	for i := range r.o.Members {
		wg.Go(func() {
			var own func(p int) bool
			if decode {
				own = func(p int) bool { return p%r.o.Members == i }
			}
			msgs[i], evs[i], errs[i] = r.readAll(ctx, own)
		})
	}
	wg.Wait()
	finish(&res, n, time.Since(t0), c0.since())
	for _, err := range errs {
		if err != nil {
			return res, err
		}
	}
	res.Extra["messages_each"] = float64(msgs[0])
	if decode {
		var total int64
		for _, e := range evs {
			total += e
		}
		if total != n {
			return res, fmt.Errorf("fanout: the consumers decoded %d events of their partitions, want %d", total, n)
		}
	}
	return res, nil
}

// fanoutRow names the fanout row.
func (r *Runner) fanoutRow(decode bool) string {
	if decode {
		return fmt.Sprintf("fanout-%d-decode", r.o.Members)
	}
	return fmt.Sprintf("fanout-%d-raw", r.o.Members)
}

// connectJS opens a connection of its own to the target, with JetStream
// on it.
func (r *Runner) connectJS() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := r.t.Connect()
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// readAll reads every message under the envelope prefix with an ordered
// consumer on a connection of its own, and returns how many it read.
// With own set it decodes the messages whose key summary holds an owned
// partition and counts the owned events.
func (r *Runner) readAll(ctx context.Context, own func(p int) bool) (msgs, events int64, err error) {
	nc, js, err := r.connectJS()
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	cons, err := js.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{FilterSubjects: []string{envPrefix + ">"}})
	if err != nil {
		return 0, 0, err
	}
	// The heartbeat of a member's reader.
	it, err := cons.Messages(jetstream.PullHeartbeat(500 * time.Millisecond))
	if err != nil {
		return 0, 0, err
	}
	defer it.Stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var hashes []uint32
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return msgs, events, fmt.Errorf("fanout consumer: after %d messages: %w", msgs, err)
		}
		msgs++
		md, err := msg.Metadata()
		if err != nil {
			return msgs, events, err
		}
		if own != nil {
			n, err := decodeOwn(msg, md, own, &hashes)
			if err != nil {
				return msgs, events, err
			}
			events += n
		}
		if md.NumPending == 0 {
			return msgs, events, nil
		}
	}
}

// decodeOwn decodes msg if its key summary holds an owned partition and
// returns how many of its events are in owned partitions.
func decodeOwn(msg jetstream.Msg, md *jetstream.MsgMetadata, own func(p int) bool, hashes *[]uint32) (int64, error) {
	h := msg.Headers()
	if h.Get(streams.EnvelopeHeader) == "" {
		// One event alone: its partition is its key's.
		if own(consume.Partition(replicator.EventKey(msg.Subject(), h), fanoutPartitions)) {
			return 1, nil
		}
		return 0, nil
	}
	if hs, ok := replicator.EnvelopeKeys(h, (*hashes)[:0]); ok {
		*hashes = hs
		mine := false
		for _, x := range hs {
			mine = mine || own(int(x%fanoutPartitions))
		}
		if !mine {
			return 0, nil
		}
	}
	evs, err := replicator.Decode(msg.Subject(), md.Sequence.Stream, md.Timestamp, h, msg.Data())
	if err != nil {
		return 0, err
	}
	var n int64
	for _, ev := range evs {
		if own(consume.Partition(consume.Key(ev), fanoutPartitions)) {
			n++
		}
	}
	return n, nil
}
