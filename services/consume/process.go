package consume

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
)

// process applies the events of msgs that belong to this member's
// partitions and were not applied yet, partition by partition, each in
// stream order.
func (m *Member) process(ctx context.Context, msgs []jetstream.Msg) {
	m.pick.own = func(p int) bool { return m.owned[p] != nil }
	if m.pull != nil {
		m.pull.add(msgs, &m.pick)
		return
	}
	byPart := map[int][]replicator.Event{}
	var order []int
	for _, msg := range msgs {
		md, err := msg.Metadata()
		if err != nil {
			m.log.Warn("event metadata", "err", err)
			continue
		}
		evs, parts := m.pick.pick(msg, md)
		for i, ev := range evs {
			p := parts[i]
			if cursorOf(ev.Pos).less(m.owned[p].next) {
				continue
			}
			if _, ok := byPart[p]; !ok {
				order = append(order, p)
			}
			byPart[p] = append(byPart[p], ev)
		}
	}
	// Partitions are independent: their transactions run side by side,
	// each partition's in order. Only this goroutine changes m.owned, after
	// they are done; a goroutine touches its own partition's entry alone.
	outcomes := make([]outcome, len(order))
	var wg sync.WaitGroup
	sem := make(chan struct{}, m.opts.Parallel)
	for i, p := range order {
		o := m.owned[p]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			evs := byPart[p]
			for len(evs) > 0 && ctx.Err() == nil && outcomes[i] == kept {
				n := min(len(evs), m.opts.MaxBatch)
				outcomes[i] = m.apply(ctx, p, o, evs[:n])
				evs = evs[n:]
			}
		})
	}
	wg.Wait()
	for i, p := range order {
		switch outcomes[i] {
		case lost:
			delete(m.owned, p)
		case reread:
			m.reread = true
		}
	}
}

// outcome is what applying a batch did to the partition.
type outcome int

const (
	kept   outcome = iota // still owned
	lost                  // fenced: another member took it
	reread                // the reader must start again from the positions
)

// errMoved says the position key holds this member's epoch but another
// position than expected: an earlier commit whose outcome was unknown was
// applied after all.
var errMoved = errors.New("position moved")

// apply commits evs (events of partition p, in stream order, none applied
// yet) through the handler, retrying until they are applied, the
// partition is lost, or ctx ends.
func (m *Member) apply(ctx context.Context, p int, o *owned, evs []replicator.Event) outcome {
	key := posKey(m.opts.Group, p)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if m.view.owner(p) != m.opts.Member {
			// Assigned away: stop now, so the new owner's take is not
			// held up by commits that would be refused anyway.
			return lost
		}
		// Drop what an earlier commit already applied.
		for len(evs) > 0 && cursorOf(evs[0].Pos).less(o.next) {
			evs = evs[1:]
		}
		if len(evs) == 0 {
			return kept
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
			return kept
		case ctx.Err() != nil:
			return kept
		case errors.Is(err, ErrFenced):
			m.fenced.Add(1)
			m.log.Info("partition taken by another member", "partition", p, "epoch", o.epoch, "now", seen.Epoch, "owner", seen.Owner)
			return lost
		case errors.Is(err, errMoved):
			behind := seen.at().less(o.next)
			o.next = seen.at()
			if behind {
				// Behind what this member applied: read again from there.
				m.log.Error("position key behind the member's, reading again", "partition", p, "key", seen.at())
				return reread
			}
			continue
		case errors.Is(err, txn.ErrUnknownOutcome), errors.Is(err, txn.ErrUnavailable):
			// The next attempt reads the position key again: errMoved if
			// this commit was applied, ErrFenced if the partition moved.
			m.log.Warn("commit outcome unknown, checking", "partition", p, "err", err)
		default:
			m.log.Warn("apply events", "partition", p, "first", evs[0].Pos, "attempt", attempt+1, "err", fmt.Errorf("%w", err))
		}
		if jsapi.Sleep(ctx, retryBackoff.Delay(attempt)) != nil {
			return kept
		}
	}
	return kept
}
