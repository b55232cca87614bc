package consume

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
)

// process applies the events of msgs that belong to this member's
// partitions and were not applied yet, partition by partition, each in
// stream order.
func (m *Member) process(ctx context.Context, msgs []jetstream.Msg) {
	byPart := map[int][]replicator.Event{}
	var order []int
	for _, msg := range msgs {
		md, err := msg.Metadata()
		if err != nil {
			m.log.Warn("event metadata", "err", err)
			continue
		}
		evs, err := replicator.Decode(msg.Subject(), md.Sequence.Stream, md.Timestamp, msg.Headers(), msg.Data())
		if err != nil {
			// Not an event of any partition: skipping it loses nothing a
			// handler could apply. Dead letters are not built yet.
			m.log.Warn("skipping undecodable message", "seq", md.Sequence.Stream, "err", err)
			continue
		}
		for _, ev := range evs {
			p := Partition(Key(ev), m.opts.Partitions)
			o := m.owned[p]
			if o == nil || cursorOf(ev.Pos).less(o.next) {
				continue
			}
			if _, ok := byPart[p]; !ok {
				order = append(order, p)
			}
			byPart[p] = append(byPart[p], ev)
		}
	}
	for _, p := range order {
		evs := byPart[p]
		for len(evs) > 0 && ctx.Err() == nil && m.owned[p] != nil {
			n := min(len(evs), m.opts.MaxBatch)
			m.apply(ctx, p, evs[:n])
			evs = evs[n:]
		}
	}
}

// errMoved says the position key holds this member's epoch but another
// position than expected: an earlier commit whose outcome was unknown was
// applied after all.
var errMoved = errors.New("position moved")

// apply commits evs (events of partition p, in stream order, none applied
// yet) through the handler, retrying until they are applied, the
// partition is lost, or ctx ends.
func (m *Member) apply(ctx context.Context, p int, evs []replicator.Event) {
	key := posKey(m.opts.Group, p)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		o := m.owned[p]
		if o == nil {
			return
		}
		// Drop what an earlier commit already applied.
		for len(evs) > 0 && cursorOf(evs[0].Pos).less(o.next) {
			evs = evs[1:]
		}
		if len(evs) == 0 {
			return
		}
		next := after(evs[len(evs)-1].Pos)
		var seen position
		err := txn.Run(ctx, m.opts.Store, func(tx *txn.Tx) error {
			e, err := tx.Get(key)
			if err != nil {
				return err
			}
			if !e.Found {
				return ErrFenced
			}
			if seen, err = decode[position](key, e.Value); err != nil {
				return err
			}
			switch {
			case seen.Epoch != o.epoch || seen.Owner != m.opts.Member:
				return ErrFenced
			case seen.at() != o.next:
				return errMoved
			}
			for _, ev := range evs {
				if err := m.opts.Handler(tx, ev); err != nil {
					return err
				}
			}
			v, err := encodePosition(position{Seq: next.seq, Index: next.index, Epoch: o.epoch, Owner: m.opts.Member})
			if err != nil {
				return err
			}
			return tx.Put(key, v)
		})
		switch {
		case err == nil:
			o.next = next
			m.applied.Add(int64(len(evs)))
			return
		case errors.Is(err, ErrFenced):
			m.fenced.Add(1)
			m.log.Info("partition taken by another member", "partition", p, "epoch", o.epoch, "now", seen.Epoch, "owner", seen.Owner)
			delete(m.owned, p)
			return
		case errors.Is(err, errMoved):
			if seen.at().less(o.next) {
				// Behind what this member applied: read again from there.
				m.log.Error("position key behind the member's, reading again", "partition", p, "key", seen.at(), "member", o.next)
				m.reread = true
			}
			o.next = seen.at()
			if m.reread {
				return
			}
			continue
		case errors.Is(err, txn.ErrUnknownOutcome), errors.Is(err, txn.ErrUnavailable):
			// The next attempt reads the position key again: errMoved if
			// this commit was applied, ErrFenced if the partition moved.
			m.log.Warn("commit outcome unknown, checking", "partition", p, "err", err)
		case ctx.Err() != nil:
			return
		default:
			m.log.Warn("apply events", "partition", p, "first", evs[0].Pos, "attempt", attempt+1, "err", fmt.Errorf("%w", err))
		}
		if jsapi.Sleep(ctx, retryBackoff.Delay(attempt)) != nil {
			return
		}
	}
}
