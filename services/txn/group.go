package txn

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/internal/jsapi"
)

// maxGroup bounds the transactions merged into one atomic batch.
const maxGroup = 64

// groupCommitter merges commits that arrive while another is in flight
// into one atomic batch, as databases group-commit their log writes: on a
// replicated stream that fsyncs every write, a batch costs about what one
// message costs, so concurrent transactions on disjoint keys share one
// RAFT proposal, one fsync per replica and one acknowledgement instead of
// queueing behind each other's.
//
// Commits queue in arrival order. One queued commit at a time leads: it
// takes the earliest commits whose keys are disjoint from every earlier
// commit still queued or still running (so commits that share a key run
// in arrival order: the reference design's dependency levels, computed a
// round at a time), sends them as one batch, hands the lead to the next
// queued commit and reports each member's result. A lone commit goes out
// the same way, in one attempt. If that attempt is refused for any reason
// (a key moved, a duplicate, no leader, a lost acknowledgement), every
// member commits again on its own under its own id, which turns the
// group's outcome into each member's precise one and keeps resends
// idempotent; until it has, later commits on its keys wait.
type groupCommitter struct {
	mu    sync.Mutex
	queue []*groupMember
	// leading is set while a queued commit holds the lead.
	leading bool
	// alone counts, per key, the members committing on their own after a
	// refused round.
	alone map[string]int
	// rounds and members count the batches sent and the commits in them.
	rounds, members atomic.Int64
}

type groupMember struct {
	id   string
	ops  []op
	keys map[string]struct{}
	lead chan struct{}
	done chan struct{}
	// Outcome, valid once done is closed: revs on success, or alone set
	// when the member must commit on its own (maybe after a group attempt
	// that may have been applied: uncertain).
	revs      map[string]uint64
	alone     bool
	uncertain bool
}

// enqueue queues ops behind every commit queued before, and gives the new
// member the lead when nobody holds it.
func (g *groupCommitter) enqueue(ops []op) *groupMember {
	m := &groupMember{id: newID(), ops: ops, lead: make(chan struct{}, 1), done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, m)
	if !g.leading {
		g.leading = true
		m.lead <- struct{}{}
	}
	g.mu.Unlock()
	return m
}

// await waits for m's outcome, leading rounds while m holds the lead, and
// commits m on its own when its round was refused.
func (g *groupCommitter) await(ctx context.Context, s *Store, m *groupMember) (map[string]uint64, error) {
	for {
		select {
		case <-m.done:
			if !m.alone {
				return m.revs, nil
			}
			revs, err := s.commitOps(ctx, m.id, m.ops, m.uncertain)
			g.aloneDone(m)
			return revs, err
		case <-m.lead:
			g.leadRound(ctx, s)
		}
	}
}

// leadRound sends one round, if any queued commit may go, and passes the
// lead on.
func (g *groupCommitter) leadRound(ctx context.Context, s *Store) {
	g.mu.Lock()
	members := g.pick(s.maxKeys)
	g.mu.Unlock()

	if len(members) > 0 {
		g.rounds.Add(1)
		g.members.Add(int64(len(members)))
		s.sendGroup(ctx, members)
	}

	g.mu.Lock()
	taken := make(map[*groupMember]bool, len(members))
	for _, x := range members {
		taken[x] = true
		if x.alone {
			if g.alone == nil {
				g.alone = map[string]int{}
			}
			for k := range keySet(x) {
				g.alone[k]++
			}
		}
	}
	rest := g.queue[:0]
	for _, x := range g.queue {
		if !taken[x] {
			rest = append(rest, x)
		}
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	g.passLead(s.maxKeys)
	g.mu.Unlock()
	for _, x := range members {
		close(x.done)
	}
}

// passLead gives the lead to the queue's head when some queued commit may
// go, else gives it up (the queue is empty, or every queued commit waits
// for a member committing alone) until enqueue or aloneDone hands it out
// again. Called with g.mu held.
func (g *groupCommitter) passLead(maxOps int) {
	if len(g.queue) == 0 || len(g.pick(maxOps)) == 0 {
		g.leading = false
		return
	}
	select {
	case g.queue[0].lead <- struct{}{}:
	default: // it holds the lead token already
	}
}

// aloneDone releases the keys of a member that committed on its own, and
// restarts the rounds if they waited for it.
func (g *groupCommitter) aloneDone(m *groupMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range keySet(m) {
		if g.alone[k]--; g.alone[k] <= 0 {
			delete(g.alone, k)
		}
	}
	if !g.leading && len(g.queue) > 0 {
		g.leading = true
		select {
		case g.queue[0].lead <- struct{}{}:
		default:
		}
	}
}

// pick returns, in arrival order, the queued commits whose keys are
// disjoint from every earlier queued commit and from every member
// committing alone, at most maxGroup of them within maxOps messages.
// Called with g.mu held.
func (g *groupCommitter) pick(maxOps int) []*groupMember {
	var members []*groupMember
	used := map[string]struct{}{}
	ops := 0
	for _, x := range g.queue {
		if len(members) == maxGroup {
			break
		}
		ks := keySet(x)
		free := len(members) == 0 || ops+len(x.ops) <= maxOps
		for k := range ks {
			if _, ok := used[k]; ok {
				free = false
			}
			if g.alone[k] > 0 {
				free = false
			}
		}
		// Taken or not, later commits must not overtake this one on its
		// keys.
		for k := range ks {
			used[k] = struct{}{}
		}
		if free {
			ops += len(x.ops)
			members = append(members, x)
		}
	}
	return members
}

func keySet(m *groupMember) map[string]struct{} {
	if m.keys == nil {
		m.keys = make(map[string]struct{}, len(m.ops))
		for _, o := range m.ops {
			m.keys[o.key] = struct{}{}
		}
	}
	return m.keys
}

// sendGroup publishes the members' ops as one atomic batch. Each member's
// first message carries its own Nats-Msg-Id and each written value its
// Platform-Txn-Id, exactly as when it commits alone, so a member that
// falls back to committing alone after a lost acknowledgement is
// recognised as a duplicate if the group batch was applied.
func (s *Store) sendGroup(ctx context.Context, members []*groupMember) {
	fallback := func(uncertain bool) {
		for _, x := range members {
			x.alone, x.uncertain = true, uncertain
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.requestTimeout)
	defer cancel()
	var msgs []*nats.Msg
	for _, x := range members {
		msgs = append(msgs, s.messages(x.id, x.ops)...)
	}
	total := len(msgs)
	ack, requested, err := s.publishAtomic(actx, msgs)
	if err != nil {
		// After the request went out the batch may have reached the stream.
		fallback(requested && ctx.Err() == nil && jsapi.IsTransient(err))
		return
	}
	err = ack.Err()
	if err == nil && ack.Seq < uint64(total) {
		err = fmt.Errorf("batch acknowledged at sequence %d for %d messages", ack.Seq, total)
	}
	if err != nil {
		s.log.Debug("group commit refused, members commit alone", "members", len(members), "err", err)
		fallback(false)
		return
	}
	last := ack.Seq - uint64(total)
	for _, x := range members {
		last += uint64(len(x.ops))
		x.revs = revisions(x.ops, last)
	}
}
