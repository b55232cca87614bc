package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/streams"
)

// readerBuffer is how many stream messages a reader holds ahead of the
// member, and the most one batch takes.
const readerBuffer = 512

// readerHeartbeat is how often the server heartbeats a reader's pending
// pull request. A reader's first pull is now and then lost (about 2
// starts in 100 on a 3-node cluster, each with its ordered consumer on
// another node than its connection's: the pull apparently reaches the
// connection's node before that node has learned of the new consumer).
// Nothing arrives then until the client misses two heartbeats and makes
// the consumer again; at the ordered consumer's default of 5 s that held
// a member's newly taken partitions for 10 s. At 500 ms it costs 1 s
// (at 1 s, one failover round in 30 took 2 s longer than the others), for
// two heartbeat messages a second to each idle member.
const readerHeartbeat = 500 * time.Millisecond

// reader feeds the member the messages of an ordered consumer on EVENTS,
// from one goroutine it owns, until stop.
type reader struct {
	msgs   chan jetstream.Msg
	it     jetstream.MessagesContext
	cancel context.CancelFunc
	done   chan struct{}
}

func startReader(ctx context.Context, js jetstream.JetStream, filter []string, start uint64, log *slog.Logger) (*reader, error) {
	cons, err := js.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{
		FilterSubjects: filter,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return nil, fmt.Errorf("consume: reader on %s: %w", streams.Events, err)
	}
	it, err := cons.Messages(jetstream.PullHeartbeat(readerHeartbeat))
	if err != nil {
		return nil, fmt.Errorf("consume: reader on %s: %w", streams.Events, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &reader{msgs: make(chan jetstream.Msg, readerBuffer), it: it, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer close(r.msgs)
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			switch {
			case ctx.Err() != nil, errors.Is(err, jetstream.ErrMsgIteratorClosed):
				return
			case err != nil:
				log.Warn("read events", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			select {
			case r.msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	return r, nil
}

// stop ends the reader and waits for its goroutine.
func (r *reader) stop() {
	r.cancel()
	r.it.Stop()
	<-r.done
}
