package consume

import (
	"context"
	"strconv"
	"time"

	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
)

// pollInterval bounds how long Next sleeps between looks while waiting:
// ack waits and nak delays end without a notification.
const pollInterval = 50 * time.Millisecond

// Next hands out up to max events of the member's partitions, waiting up
// to wait for at least one. It returns an empty slice when none came in
// time, and ctx's error when ctx ended first. Each partition's events
// come in stream order, and a partition's events go to one caller at a
// time: none is handed out again while an earlier delivery of the
// partition is out and within the ack wait. Settle each delivery with
// Ack, Nak, InProgress or Term; one left unsettled past the ack wait is
// handed out again, and after the group's max deliveries it goes to
// stream DEAD. Next needs Options.AtLeastOnce (else ErrNotAtLeastOnce).
func (m *Member) Next(ctx context.Context, max int, wait time.Duration) ([]Delivery, error) {
	if m.pull == nil {
		return nil, ErrNotAtLeastOnce
	}
	if max < 1 {
		max = 1
	}
	deadline := time.Now().Add(wait)
	for {
		wake := m.pull.waitCh()
		now := time.Now()
		dels, die := m.pull.take(max, now)
		for _, d := range die {
			m.bury(ctx, d)
		}
		if len(dels) > 0 {
			m.delivered.Add(int64(len(dels)))
			return dels, nil
		}
		left := deadline.Sub(now)
		if left <= 0 {
			return []Delivery{}, nil
		}
		t := time.NewTimer(min(left, pollInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Ack settles the event of token: it is done and will not be handed out
// again. Acknowledging a settled event succeeds. A token of another group
// (ErrWrongGroup), of another member (ErrOtherMember), of a partition
// this member no longer owns or owns under a newer epoch (ErrStale), or
// not handed out (ErrBadToken) is refused and settles nothing.
func (m *Member) Ack(token string) error {
	return m.settle(context.Background(), token, opAck, 0, "")
}

// AckDelivery acknowledges d, a delivery this member's Next handed out,
// as Ack does its token, without encoding and parsing one: the cheap path
// for Go callers. Errors as Ack's.
func (m *Member) AckDelivery(d Delivery) error {
	if m.pull == nil {
		return ErrNotAtLeastOnce
	}
	return m.pull.ack(d)
}

// Nak hands the event of token out again after delay (0: at the next
// Next), before any later event of its partition. A nak of the event's
// last allowed delivery sends it to DEAD instead. Errors as Ack's, and
// ErrSettled for an event already settled.
func (m *Member) Nak(token string, delay time.Duration) error {
	return m.settle(context.Background(), token, opNak, max(delay, 0), "")
}

// InProgress restarts the ack wait of the event of token, so it is not
// handed out again while it is being handled. Errors as Nak's.
func (m *Member) InProgress(token string) error {
	return m.settle(context.Background(), token, opInProgress, 0, "")
}

// Term gives up on the event of token: it goes to stream DEAD with
// reason, and is settled once stored there. Errors as Nak's, or the
// error of storing it in DEAD (the event then stays unsettled and goes to
// DEAD a second later, when Next next looks).
func (m *Member) Term(ctx context.Context, token, reason string) error {
	return m.settle(ctx, token, opTerm, 0, reason)
}

func (m *Member) settle(ctx context.Context, token string, op settleOp, delay time.Duration, reason string) error {
	if m.pull == nil {
		return ErrNotAtLeastOnce
	}
	tok, err := ParseToken(token)
	if err != nil {
		return err
	}
	d, err := m.pull.settle(tok, op, delay, time.Now())
	if err != nil {
		return err
	}
	if d != nil {
		if op == opTerm {
			d.reason = "term"
			if reason != "" {
				d.reason = "term: " + reason
			}
		}
		return m.bury(ctx, *d)
	}
	return nil
}

// bury stores a dying event in DEAD and settles it.
func (m *Member) bury(ctx context.Context, d dyingSlot) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := m.pull.dead(ctx, d.s, d.p, d.reason)
	m.pull.buried(d, err, time.Now())
	if err != nil {
		m.log.Warn("dead letter not stored", "partition", d.p, "pos", d.s.ev.Pos, "err", err)
		return err
	}
	m.deadLetters.Add(1)
	return nil
}

// flush writes the positions of the partitions that settled events since
// the last flush, in one atomic batch, each checked against the epoch and
// owner this member holds; a partition found taken by another member is
// dropped.
func (m *Member) flush(ctx context.Context) {
	ups := m.pull.positions()
	if len(ups) == 0 {
		return
	}
	keys := make([]string, len(ups))
	for i, u := range ups {
		keys[i] = posKey(m.opts.Group, u.p)
	}
	got, err := m.opts.Store.GetMany(ctx, keys)
	if err != nil {
		m.log.Warn("read positions", "err", err)
		return
	}
	c := txn.Commit{Reads: map[string]uint64{}, Writes: map[string][]byte{}}
	var writing []posUpdate
	for i, u := range ups {
		e := got[keys[i]]
		var pos position
		if e.Found {
			if pos, err = decode[position](keys[i], e.Value); err != nil {
				m.log.Warn("read positions", "err", err)
				continue
			}
		}
		if !e.Found || pos.Epoch != u.epoch || pos.Owner != m.opts.Member {
			m.fenced.Add(1)
			m.log.Info("partition taken by another member", "partition", u.p, "epoch", u.epoch, "now", pos.Epoch, "owner", pos.Owner)
			m.pull.drop(u.p)
			delete(m.owned, u.p)
			continue
		}
		if !pos.at().less(u.at) {
			m.pull.committed(u.p, u.epoch, pos.at())
			continue
		}
		v, err := encodePosition(position{Seq: u.at.seq, Index: u.at.index, Epoch: u.epoch, Owner: m.opts.Member})
		if err != nil {
			continue
		}
		c.Reads[keys[i]], c.Writes[keys[i]] = e.Revision, v
		writing = append(writing, u)
	}
	if len(writing) == 0 {
		return
	}
	if _, err := m.opts.Store.Commit(ctx, c); err != nil {
		// A conflict (a partition moved meanwhile) or an unknown outcome:
		// the next flush reads the keys again and finds out.
		m.log.Debug("write positions", "err", err)
		return
	}
	for _, u := range writing {
		m.pull.committed(u.p, u.epoch, u.at)
		if o := m.owned[u.p]; o != nil && o.epoch == u.epoch {
			o.next = u.at // a restarted reader starts from here
		}
	}
}

// positionText formats an event's position as seq or seq:index.
func positionText(p replicator.Position) string {
	if p.Count <= 1 && p.Index == 0 {
		return strconv.FormatUint(p.Seq, 10)
	}
	return strconv.FormatUint(p.Seq, 10) + ":" + strconv.Itoa(p.Index)
}
