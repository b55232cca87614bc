package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/services/replicator"
)

// ErrNotAtLeastOnce means Next or a settlement was called on a member
// that applies events through its Handler.
var ErrNotAtLeastOnce = errors.New("consume: member applies events through its handler; set Options.AtLeastOnce to pull them")

// Delivery is one event handed out by Member.Next. Settle it with the
// member's Ack, Nak, InProgress or Term, by its Token.
type Delivery struct {
	// Event is the decoded event: subject, data, headers, position.
	Event replicator.Event
	// Partition is the event's partition in the group.
	Partition int
	// Attempt counts its deliveries, this one included (1 the first time).
	Attempt int
	// tok is what Token encodes; pt and s are where the puller keeps the
	// event, so that AckDelivery finds it without parsing a token.
	tok Token
	pt  *part
	s   *slot
}

// Token returns the delivery's token: opaque to clients (ParseToken
// reads it), for settling by Ack, Nak, InProgress and Term, and through
// the consume service. AckDelivery settles a Delivery without one.
func (d Delivery) Token() string { return d.tok.String() }

// slotState is where a buffered event is in its settlement.
type slotState uint8

const (
	ready slotState = iota // to hand out (again) once due
	out                    // handed out; redelivered after due (the ack wait)
	dying                  // on its way to DEAD
	done                   // settled: acknowledged, terminated or dead
)

// slot is one event of an owned partition, from the partition's
// committed position on.
type slot struct {
	ev       replicator.Event
	at       cursor
	state    slotState
	attempts int
	due      time.Time // out: end of the ack wait; ready: end of a nak's delay
	dead     string    // why it goes to DEAD, once storing it there failed
}

// part is one owned partition in at-least-once mode.
type part struct {
	epoch uint64
	slots []*slot // unsettled events and settled ones behind them, in stream order
	outs  int     // slots in state out
	tail  cursor  // right after the last event buffered
	seen  cursor  // every message before it was read (events of other partitions included)
	// committed is the position last written to the position key.
	committed cursor
}

// set moves s, one of pt's slots, to state st, keeping count of those out.
func (pt *part) set(s *slot, st slotState) {
	if s.state == out {
		pt.outs--
	}
	if st == out {
		pt.outs++
	}
	s.state = st
}

// position is where the partition's committed position may move: its
// first unsettled event, or everything read when all are settled.
func (p *part) position() cursor {
	for _, s := range p.slots {
		if s.state != done {
			return s.at
		}
	}
	if p.tail.less(p.seen) {
		return p.seen
	}
	return p.tail
}

// puller hands out the events of a member's partitions and tracks their
// settlement. The member's loop feeds it (sync, add, positions) and any
// goroutine calls next and settle.
type puller struct {
	group, member string
	maxPending    int
	dead          func(ctx context.Context, s *slot, p int, reason string) error

	mu         sync.Mutex
	maxDeliver int
	ackWait    time.Duration
	parts      map[int]*part
	buffered   int
	rr         int           // the partition Next looks at first, for fairness
	wake       chan struct{} // closed when an event may have become deliverable
	space      chan struct{} // closed when buffered drops below maxPending
}

func newPuller(group, member string, maxPending int) *puller {
	return &puller{
		group: group, member: member, maxPending: maxPending,
		maxDeliver: DefaultMaxDeliver, ackWait: DefaultAckWait,
		parts: map[int]*part{}, wake: make(chan struct{}),
	}
}

func (pl *puller) configure(maxDeliver int, ackWait time.Duration) {
	pl.mu.Lock()
	pl.maxDeliver, pl.ackWait = maxDeliver, ackWait
	pl.mu.Unlock()
}

// notify wakes the Next calls waiting for events; pl.mu is held.
func (pl *puller) notify() {
	close(pl.wake)
	pl.wake = make(chan struct{})
}

// freed closes the space channel once buffered is below the bound; pl.mu
// is held.
func (pl *puller) freed() {
	if pl.space != nil && pl.buffered < pl.maxPending {
		close(pl.space)
		pl.space = nil
	}
}

// room reports whether the member may read more messages, and if not, a
// channel closed when it may.
func (pl *puller) room() (bool, <-chan struct{}) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.buffered < pl.maxPending {
		return true, nil
	}
	if pl.space == nil {
		pl.space = make(chan struct{})
	}
	return false, pl.space
}

// sync makes the puller's partitions those the member owns: a partition
// taken since is added at its position, one lost (or taken again under a
// new epoch) is dropped with its unsettled events, which its next owner
// hands out again.
func (pl *puller) sync(owned map[int]*owned) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for p, pt := range pl.parts {
		if o := owned[p]; o == nil || o.epoch != pt.epoch {
			pl.buffered -= len(pt.slots)
			delete(pl.parts, p)
		}
	}
	for p, o := range owned {
		if pl.parts[p] == nil {
			pl.parts[p] = &part{epoch: o.epoch, tail: o.next, seen: o.next, committed: o.next}
		}
	}
	pl.freed()
	pl.notify()
}

// drop forgets partition p (fenced).
func (pl *puller) drop(p int) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pt := pl.parts[p]; pt != nil {
		pl.buffered -= len(pt.slots)
		delete(pl.parts, p)
		pl.freed()
	}
}

// add buffers the events of msgs that belong to owned partitions and
// were not buffered yet; pk picks them (its own is replaced by the
// partitions the puller holds).
func (pl *puller) add(msgs []jetstream.Msg, pk *picker) {
	pl.mu.Lock()
	own := make([]bool, pk.partitions)
	for p := range pl.parts {
		if p < len(own) {
			own[p] = true
		}
	}
	pl.mu.Unlock()
	pk.own = func(p int) bool { return own[p] }
	type picked struct {
		evs   []replicator.Event
		parts []int
	}
	var got []picked
	var last uint64
	for _, msg := range msgs {
		md, err := msg.Metadata()
		if err != nil {
			pk.warn("event metadata", "err", err)
			continue
		}
		last = md.Sequence.Stream
		if evs, parts := pk.pick(msg, md); len(evs) > 0 {
			got = append(got, picked{evs, parts})
		}
	}
	// Only the member's loop, which calls add, changes pl.parts: the
	// partitions are still those of own.
	pl.mu.Lock()
	defer pl.mu.Unlock()
	added := false
	for _, g := range got {
		// One allocation for the slots of a message.
		slots := make([]slot, 0, len(g.evs))
		for i, ev := range g.evs {
			pt := pl.parts[g.parts[i]]
			at := cursorOf(ev.Pos)
			if pt == nil || at.less(pt.tail) {
				continue
			}
			slots = append(slots, slot{ev: ev, at: at})
			pt.slots = append(pt.slots, &slots[len(slots)-1])
			pt.tail = after(ev.Pos)
			pl.buffered++
			added = true
		}
	}
	if last > 0 {
		for _, pt := range pl.parts {
			if c := (cursor{last + 1, 0}); pt.seen.less(c) {
				pt.seen = c
			}
		}
	}
	if added {
		pl.notify()
	}
}

// posUpdate is a position to write for a partition owned under epoch.
type posUpdate struct {
	p     int
	epoch uint64
	at    cursor
}

// positions returns the partitions whose position moved since it was
// last committed.
func (pl *puller) positions() []posUpdate {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []posUpdate
	for p, pt := range pl.parts {
		if at := pt.position(); pt.committed.less(at) {
			out = append(out, posUpdate{p, pt.epoch, at})
		}
	}
	return out
}

// committed records that p's position key holds at.
func (pl *puller) committed(p int, epoch uint64, at cursor) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pt := pl.parts[p]; pt != nil && pt.epoch == epoch && pt.committed.less(at) {
		pt.committed = at
	}
}

// trim drops the settled events at the head of pt; pl.mu is held.
func (pl *puller) trim(pt *part) {
	n := 0
	for n < len(pt.slots) && pt.slots[n].state == done {
		n++
	}
	if n > 0 {
		clear(pt.slots[:n])
		pt.slots = pt.slots[n:]
		pl.buffered -= n
		pl.freed()
	}
}

// dyingSlot is an event on its way to DEAD.
type dyingSlot struct {
	s      *slot
	p      int
	epoch  uint64
	reason string
}

// take hands out up to max events, in stream order per partition, and
// returns the events due for DEAD (marked dying) for the caller to send.
// A partition is handed out to one caller at a time: while any of its
// events is out and within its ack wait, none of its events is handed out
// again. An event that is not due (a nak's delay) holds back the events
// after it.
func (pl *puller) take(max int, now time.Time) ([]Delivery, []dyingSlot) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	ps := make([]int, 0, len(pl.parts))
	for p := range pl.parts {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var dels []Delivery
	var die []dyingSlot
	if len(ps) == 0 {
		return nil, nil
	}
	start := pl.rr % len(ps)
	pl.rr++
	for i := range ps {
		p := ps[(start+i)%len(ps)]
		pt := pl.parts[p]
		busy := false
		for _, s := range pt.slots {
			if pt.outs == 0 {
				break // nothing out: no ack wait to look at
			}
			if s.state == out {
				if now.Before(s.due) {
					busy = true
					break
				}
				switch {
				case s.dead != "":
					pt.set(s, dying)
					die = append(die, dyingSlot{s, p, pt.epoch, s.dead})
				case s.attempts >= pl.maxDeliver:
					pt.set(s, dying)
					die = append(die, dyingSlot{s, p, pt.epoch, fmt.Sprintf("max deliveries (%d): ack wait expired", s.attempts)})
				default:
					pt.set(s, ready)
					s.due = time.Time{}
				}
			}
		}
		if busy {
			continue
		}
		for _, s := range pt.slots {
			if len(dels) >= max {
				break
			}
			if s.state != ready {
				continue
			}
			if now.Before(s.due) {
				break // a nak's delay holds the partition
			}
			pt.set(s, out)
			s.due = now.Add(pl.ackWait)
			s.attempts++
			dels = append(dels, Delivery{
				Event: s.ev, Partition: p, Attempt: s.attempts,
				tok: Token{Group: pl.group, Member: pl.member, Partition: p, Epoch: pt.epoch, Seq: s.at.seq, Index: s.at.index},
				pt:  pt, s: s,
			})
		}
		if len(dels) >= max {
			break
		}
	}
	return dels, die
}

// settleOp is what a settlement does.
type settleOp int

const (
	opAck settleOp = iota
	opNak
	opInProgress
	opTerm
)

// find returns the slot of tok's event, nil if it is settled and behind
// the buffer, or an error.
func (pl *puller) find(tok Token) (*part, *slot, error) {
	switch {
	case tok.Group != pl.group:
		return nil, nil, fmt.Errorf("%w: token of group %s, this is %s", ErrWrongGroup, tok.Group, pl.group)
	case tok.Member != pl.member:
		return nil, nil, fmt.Errorf("%w: %s", ErrOtherMember, tok.Member)
	}
	pt := pl.parts[tok.Partition]
	if pt == nil {
		return nil, nil, fmt.Errorf("%w: partition %d", ErrStale, tok.Partition)
	}
	if pt.epoch != tok.Epoch {
		return nil, nil, fmt.Errorf("%w: partition %d is at epoch %d, the token's is %d", ErrStale, tok.Partition, pt.epoch, tok.Epoch)
	}
	at := tok.at()
	if !at.less(pt.tail) {
		return nil, nil, fmt.Errorf("%w: no event at %d:%d was handed out", ErrBadToken, at.seq, at.index)
	}
	i, ok := slices.BinarySearchFunc(pt.slots, at, func(s *slot, c cursor) int {
		switch {
		case s.at.less(c):
			return -1
		case c.less(s.at):
			return 1
		}
		return 0
	})
	if !ok {
		if i == 0 {
			return pt, nil, nil // settled and trimmed
		}
		return nil, nil, fmt.Errorf("%w: no event of partition %d at %d:%d", ErrBadToken, tok.Partition, at.seq, at.index)
	}
	return pt, pt.slots[i], nil
}

// settle applies op to tok's event. It returns the event when it must go
// to DEAD (marked dying).
func (pl *puller) settle(tok Token, op settleOp, delay time.Duration, now time.Time) (*dyingSlot, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pt, s, err := pl.find(tok)
	if err != nil {
		return nil, err
	}
	if s == nil || s.state == done || s.state == dying {
		if op == opAck {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %d:%d", ErrSettled, tok.Seq, tok.Index)
	}
	switch op {
	case opAck:
		pt.set(s, done)
		pl.trim(pt)
	case opNak:
		if s.attempts >= pl.maxDeliver {
			pt.set(s, dying)
			return &dyingSlot{s, tok.Partition, pt.epoch, fmt.Sprintf("max deliveries (%d): nak", s.attempts)}, nil
		}
		pt.set(s, ready)
		s.due = now.Add(delay)
		pl.notify()
	case opInProgress:
		pt.set(s, out)
		s.due = now.Add(pl.ackWait)
	case opTerm:
		pt.set(s, dying)
		return &dyingSlot{s, tok.Partition, pt.epoch, ""}, nil
	}
	return nil, nil
}

// ack acknowledges d's event, found by the slot Next handed out rather
// than by a token; the same checks as settle's opAck.
func (pl *puller) ack(d Delivery) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	switch {
	case d.s == nil:
		return fmt.Errorf("%w: not a delivery of Next", ErrBadToken)
	case d.tok.Group != pl.group:
		return fmt.Errorf("%w: delivery of group %s, this is %s", ErrWrongGroup, d.tok.Group, pl.group)
	case d.tok.Member != pl.member:
		return fmt.Errorf("%w: %s", ErrOtherMember, d.tok.Member)
	}
	// A partition taken again is a new part, under a new epoch.
	if pt := pl.parts[d.Partition]; pt != d.pt || pt.epoch != d.tok.Epoch {
		return fmt.Errorf("%w: partition %d", ErrStale, d.Partition)
	}
	if d.s.state == done || d.s.state == dying {
		return nil
	}
	d.pt.set(d.s, done)
	pl.trim(d.pt)
	return nil
}

// buried ends a dying event: done when it reached DEAD, else ready to be
// sent again (or handed out) after a second.
func (pl *puller) buried(d dyingSlot, err error, now time.Time) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pt := pl.parts[d.p]
	if pt == nil || pt.epoch != d.epoch {
		return
	}
	if err != nil {
		pt.set(d.s, out)
		d.s.due, d.s.dead = now.Add(time.Second), d.reason
		return
	}
	pt.set(d.s, done)
	pl.trim(pt)
}

// waitCh returns the channel closed on the next notify.
func (pl *puller) waitCh() <-chan struct{} {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.wake
}
