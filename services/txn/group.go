package txn

import (
	"context"
	"fmt"
	"strconv"
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
// The first waiting commit leads: it holds the lead for one attempt, so
// that commits arriving meanwhile queue up, then takes every queued commit whose keys
// are disjoint from those already taken (a commit sharing a key with an
// earlier one waits for the next round, so conflicting commits keep their
// arrival order), sends them as one batch, hands leadership to the next
// queued commit and reports each member's result. A lone commit goes out
// the same way, in one attempt. If the first attempt is refused for any reason (a key moved,
// a duplicate, no leader, a lost acknowledgement), every member commits
// again on its own under its own id, which turns the group's outcome into
// each member's precise one and keeps resends idempotent.
type groupCommitter struct {
	mu    sync.Mutex
	queue []*groupMember
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

func (g *groupCommitter) commit(ctx context.Context, s *Store, ops []op) (map[string]uint64, error) {
	m := &groupMember{id: newID(), ops: ops, lead: make(chan struct{}, 1), done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, m)
	if len(g.queue) == 1 {
		m.lead <- struct{}{}
	}
	g.mu.Unlock()

	select {
	case <-m.done:
	case <-m.lead:
		g.leadRound(ctx, s, m)
	}
	if m.alone {
		return s.commitOps(ctx, m.id, m.ops, m.uncertain)
	}
	return m.revs, nil
}

// leadRound sends the round led by m and passes the lead on.
func (g *groupCommitter) leadRound(ctx context.Context, s *Store, m *groupMember) {
	g.mu.Lock()
	members := g.pick(s.maxKeys)
	g.mu.Unlock()

	g.rounds.Add(1)
	g.members.Add(int64(len(members)))
	s.sendGroup(ctx, members)

	g.mu.Lock()
	taken := make(map[*groupMember]bool, len(members))
	for _, x := range members {
		taken[x] = true
	}
	rest := g.queue[:0]
	for _, x := range g.queue {
		if !taken[x] {
			rest = append(rest, x)
		}
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	if len(g.queue) > 0 {
		g.queue[0].lead <- struct{}{}
	}
	g.mu.Unlock()
	for _, x := range members {
		if x != m {
			close(x.done)
		}
	}
}

// pick returns the queue head and every later commit whose keys are
// disjoint from all commits before it, within maxOps messages.
func (g *groupCommitter) pick(maxOps int) []*groupMember {
	members := []*groupMember{g.queue[0]}
	used := make(map[string]struct{}, 2*len(g.queue[0].ops))
	for k := range keySet(g.queue[0]) {
		used[k] = struct{}{}
	}
	ops := len(g.queue[0].ops)
	blocked := map[string]struct{}{}
	for _, x := range g.queue[1:] {
		if len(members) == maxGroup {
			break
		}
		ks := keySet(x)
		disjoint := ops+len(x.ops) <= maxOps
		for k := range ks {
			if _, ok := used[k]; ok {
				disjoint = false
			}
			if _, ok := blocked[k]; ok {
				disjoint = false
			}
		}
		if !disjoint {
			// Later commits must not overtake this one on its keys.
			for k := range ks {
				blocked[k] = struct{}{}
			}
			continue
		}
		for k := range ks {
			used[k] = struct{}{}
		}
		ops += len(x.ops)
		members = append(members, x)
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
	total := 0
	for _, x := range members {
		total += len(x.ops)
	}
	batch := newID()
	seq := 0
	var resp *nats.Msg
	if total == 1 {
		// One message is atomic by itself: a plain publish, without the
		// staging step of a batch.
		msg := s.message(members[0].id, members[0].ops[0])
		msg.Header.Set(hdrMsgID, members[0].id)
		var err error
		if resp, err = s.nc.RequestMsgWithContext(actx, msg); err != nil {
			fallback(ctx.Err() == nil && jsapi.IsTransient(err))
			return
		}
	}
	for _, x := range members {
		if total == 1 {
			break
		}
		for i, o := range x.ops {
			msg := s.message(x.id, o)
			if i == 0 {
				msg.Header.Set(hdrMsgID, x.id)
			}
			seq++
			msg.Header.Set(hdrBatchID, batch)
			msg.Header.Set(hdrBatchSeq, strconv.Itoa(seq))
			if seq < total {
				if err := s.nc.PublishMsg(msg); err != nil {
					fallback(false)
					return
				}
				continue
			}
			msg.Header.Set(hdrBatchCommit, "1")
			var err error
			resp, err = s.nc.RequestMsgWithContext(actx, msg)
			if err != nil {
				// The commit may have reached the stream.
				fallback(ctx.Err() == nil && jsapi.IsTransient(err))
				return
			}
		}
	}
	ack, err := jsapi.ParsePubAck(resp.Data)
	if err == nil {
		err = ack.Err()
	}
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
