package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/kvfollow"
	"github.com/platform/platform/lease"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// ErrFenced means the member no longer owns a partition: another member
// took it (a higher epoch) while this one was applying events, and the
// commit was refused. Nothing of that commit was written.
var ErrFenced = errors.New("consume: partition fenced by a newer owner")

// Member is one member of a consumer group. Run it until its context
// ends; it joins the group, takes the partitions the group's leader
// assigns it, and applies their events exactly once.
//
// How a member works:
//
//   - Membership: every TTL/4 it writes its member key with a message TTL
//     of TTL, and it heartbeats to the platform's detector every
//     Heartbeat. A member that dies (or is paused) leaves the group when
//     the detector declares it dead, or after TTL where no detector runs;
//     one that stops deletes the key at once.
//   - Leader: the holder of the group's lease (bucket LEASES) lists the
//     live members every tick and writes Assign's result to the assign
//     key (compare-and-set on its revision).
//   - Ownership: a member that is assigned a partition takes it by writing
//     epoch+1 (itself as owner, the position unchanged) to the partition's
//     position key, expecting the revision it read. That is the fence.
//   - Processing: one ordered consumer on EVENTS from the lowest position
//     among its partitions; each partition's events, in stream order, go
//     through Handler inside one txn transaction that also reads the
//     position key (checking epoch and owner) and writes the new position.
//     The position key's expected revision makes a former owner's late
//     commit fail; a user key's conflict retries the handler.
type Member struct {
	opts Options
	log  *slog.Logger
	js   jetstream.JetStream

	// instance names this run in heartbeats to the detector ("": none).
	instance string

	owned  map[int]*owned // owned by Run's goroutine
	view   *view          // set by Run before the loop starts
	reread bool           // the reader must start again from the positions; owned by Run's goroutine

	// pauseKeeper stops the membership and lease loop (tests simulate a
	// paused process with it).
	pauseKeeper atomic.Bool
	// fenced counts commits refused because a partition was taken.
	fenced atomic.Int64
	// applied counts events committed.
	applied atomic.Int64
	// held is how many partitions the member owns.
	held atomic.Int32
	// read is the last stream message read and applied since the reader
	// started (0: none), published with the membership for Status.
	read atomic.Uint64

	// pick takes the owned partitions' events out of stream messages;
	// used by Run's goroutine.
	pick picker
	// pull hands out events in at-least-once mode (nil otherwise).
	pull *puller
	// delivered and deadLetters count events handed out and sent to DEAD.
	delivered, deadLetters atomic.Int64
}

// owned is a partition this member holds.
type owned struct {
	epoch uint64
	next  cursor // the next event to apply
}

// New checks the options and returns a member; Run starts it.
func New(opts Options) (*Member, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	m := &Member{
		opts:  opts,
		log:   opts.Logger.With("component", "consume", "group", opts.Group, "member", opts.Member),
		js:    js,
		owned: map[int]*owned{},
	}
	if opts.Heartbeat > 0 {
		m.instance = newInstance(opts.Member)
	}
	m.pick = picker{group: opts.Group, partitions: opts.Partitions, warn: m.log.Warn}
	if opts.AtLeastOnce {
		m.pull = newPuller(opts.Group, opts.Member, opts.MaxPending)
		m.pull.dead = m.deadLetter
	}
	return m, nil
}

// ID returns the member's name.
func (m *Member) ID() string { return m.opts.Member }

// Applied returns how many events this member has committed.
func (m *Member) Applied() int64 { return m.applied.Load() }

// Run joins the group and applies events until ctx ends; it then leaves
// the group (deleting its member key and releasing the lease, so the
// partitions move at once) and returns nil. It returns an error if the
// group cannot be joined (ErrConfig, an unreachable store). Run may be
// called once; a member that stopped is replaced by a new one.
func (m *Member) Run(ctx context.Context) error {
	err := m.run(ctx)
	if ctx.Err() != nil {
		return nil // stopped while joining
	}
	return err
}

func (m *Member) run(ctx context.Context) error {
	if err := m.ensureConfig(ctx); err != nil {
		return err
	}
	if m.instance != "" {
		// Heartbeats start before the member joins, so the detector knows
		// it before it owns anything, and end after it left.
		hctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); m.heartbeats(hctx) }()
		defer func() { stop(); <-done }()
	}
	kv, err := m.js.KeyValue(ctx, m.opts.Store.Bucket())
	if err != nil {
		return fmt.Errorf("consume: bucket %s: %w", m.opts.Store.Bucket(), err)
	}
	leases, err := m.js.KeyValue(ctx, streams.BucketLeases)
	if err != nil {
		return fmt.Errorf("consume: bucket %s: %w", streams.BucketLeases, err)
	}
	// The lease lives at most four ticks (2 s by default), not TTL: when
	// the leader dies, the detector's verdict on it reaches the others
	// in about that time, and one of them must be leader to act on it.
	l, err := lease.New(leases, leaseKey(m.opts.Group), m.opts.Member, min(m.opts.TTL, 4*m.opts.Tick), m.opts.Tick)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	if err := m.beat(ctx); err != nil {
		return err
	}
	v := newView(m.opts.Group, m.opts.TTL)
	f, err := kvfollow.Start(ctx, filtered{KeyValue: kv, keys: v.filters()}, kvfollow.Options{Put: v.put, Delete: v.del, Logger: m.log})
	if err != nil {
		return fmt.Errorf("consume: follow group %s: %w", m.opts.Group, err)
	}
	defer f.Stop()
	if m.instance != "" {
		if df := m.followDetector(ctx, v); df != nil {
			defer df.Stop()
		}
	}
	select {
	case <-f.Synced():
	case <-ctx.Done():
		return nil
	}
	var wg sync.WaitGroup
	kctx, stopKeeper := context.WithCancel(ctx)
	wg.Go(func() { m.keep(kctx, v, l) })
	defer func() {
		stopKeeper()
		wg.Wait()
	}()
	m.view = v
	m.loop(ctx, v)
	if m.pull != nil {
		// Write what was settled since the last tick, so the next owner
		// does not hand it out again.
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m.flush(fctx)
		cancel()
	}
	return nil
}

// ensureConfig creates the group's config key, or checks it.
func (m *Member) ensureConfig(ctx context.Context) error {
	g, err := joinGroup(ctx, m.opts.Store, GroupConfig{
		Name: m.opts.Group, Partitions: m.opts.Partitions, Filter: m.opts.Filter,
		MaxDeliver: m.opts.MaxDeliver, AckWait: m.opts.AckWait,
	}, true)
	if err != nil {
		return err
	}
	if m.pull != nil {
		switch {
		case m.opts.MaxDeliver != 0 && m.opts.MaxDeliver != g.MaxDeliver:
			return fmt.Errorf("%w: group %s has max deliver %d, asked %d", ErrConfig, g.Name, g.MaxDeliver, m.opts.MaxDeliver)
		case m.opts.AckWait != 0 && m.opts.AckWait != g.AckWait:
			return fmt.Errorf("%w: group %s has ack wait %s, asked %s", ErrConfig, g.Name, g.AckWait, m.opts.AckWait)
		}
		m.pull.configure(g.MaxDeliver, g.AckWait)
	}
	return nil
}

// keep renews the membership, competes for the lease and, while it holds
// it, rebalances, every tick until ctx ends; then it leaves.
func (m *Member) keep(ctx context.Context, v *view, l *lease.Lease) {
	t := time.NewTicker(m.opts.Tick)
	wake := merge(ctx, t.C, v.lost) // every tick, and at once when the detector declares a member dead
	kick(v.lost)                    // the first step at once: a new group has no leader yet
	defer t.Stop()
	lastBeat := time.Now()
	for {
		select {
		case <-ctx.Done():
			m.leave(l)
			return
		case <-wake:
		}
		if m.pauseKeeper.Load() {
			continue
		}
		now := time.Now()
		if now.Sub(lastBeat) >= m.opts.TTL/4 {
			if err := m.beat(ctx); err != nil {
				m.log.Warn("renew membership", "err", err)
			} else {
				lastBeat = now
			}
		}
		// A step may take longer than a tick on a busy host; the lease
		// stays held through failed renewals for TTL minus a tick.
		sctx, cancel := context.WithTimeout(ctx, m.opts.TTL/4)
		held, err := l.Step(sctx, now)
		if err != nil && ctx.Err() == nil {
			m.log.Warn("lease", "err", err)
		}
		if held {
			if err := m.rebalance(sctx, v, now); err != nil && ctx.Err() == nil {
				m.log.Warn("rebalance", "err", err)
			}
		}
		cancel()
	}
}

// beat writes the member key with a message TTL.
func (m *Member) beat(ctx context.Context) error {
	v, _ := json.Marshal(member{Member: m.opts.Member, TTLMS: m.opts.TTL.Milliseconds(), Instance: m.instance, Read: m.read.Load()})
	msg := nats.NewMsg(streams.KVSubject(m.opts.Store.Bucket(), memberKey(m.opts.Group, m.opts.Member)))
	msg.Data = v
	msg.Header.Set(jetstream.MsgTTLHeader, m.opts.TTL.String())
	if _, err := m.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("consume: write member key: %w", err)
	}
	return nil
}

// leave deletes the member key (a delete marker that itself expires) and
// releases the lease, so the leader reassigns at once.
func (m *Member) leave(l *lease.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	msg := nats.NewMsg(streams.KVSubject(m.opts.Store.Bucket(), memberKey(m.opts.Group, m.opts.Member)))
	msg.Header.Set(streams.KVOperationHeader, streams.KVOperationDelete)
	msg.Header.Set(jetstream.MsgTTLHeader, "1s")
	if _, err := m.js.PublishMsg(ctx, msg); err != nil {
		m.log.Warn("leave group", "err", err)
	}
	if err := l.Release(ctx); err != nil {
		m.log.Warn("release lease", "err", err)
	}
}

// rebalance writes the assignment for the members live at now, if it
// changed, by compare-and-set on the revision the view holds.
func (m *Member) rebalance(ctx context.Context, v *view, now time.Time) error {
	members := v.members(now)
	if len(members) == 0 {
		return nil // not even this member: its own key is not renewed
	}
	prev, rev := v.assignment()
	owners := Assign(m.opts.Partitions, members, prev.Owners)
	if slices.Equal(owners, prev.Owners) && slices.Equal(members, prev.Members) {
		return nil
	}
	b, err := json.Marshal(assignment{Owners: owners, Members: members})
	if err != nil {
		return fmt.Errorf("encode assignment: %w", err)
	}
	key := groupKey(m.opts.Group, "assign")
	if _, err := m.opts.Store.Commit(ctx, txn.Commit{Reads: map[string]uint64{key: rev}, Writes: map[string][]byte{key: b}}); err != nil {
		if errors.Is(err, txn.ErrConflict) {
			return nil // the view is behind; the next tick has the new revision
		}
		return fmt.Errorf("write assignment: %w", err)
	}
	m.log.Info("rebalanced", "members", members, "moved", Moved(prev.Owners, owners))
	return nil
}

// loop is the member's main goroutine: it follows the assignment every
// tick and applies the events its reader delivers.
func (m *Member) loop(ctx context.Context, v *view) {
	t := time.NewTicker(m.opts.Tick)
	wake := merge(ctx, t.C, v.assigned) // every tick, and at once when the assignment changes
	defer t.Stop()
	var r *reader
	defer func() {
		if r != nil {
			r.stop()
		}
	}()
	restart := func() {
		m.read.Store(0)
		if r != nil {
			r.stop()
			r = nil
		}
		if len(m.owned) == 0 {
			return
		}
		var err error
		if r, err = startReader(ctx, m.js, m.opts.Filter, m.startSeq(), m.log); err != nil {
			m.log.Warn("start reader", "err", err)
			r = nil
		}
	}
	for ctx.Err() == nil {
		var msgs <-chan jetstream.Msg
		var space <-chan struct{}
		if r != nil {
			msgs = r.msgs
			if m.pull != nil {
				if ok, ch := m.pull.room(); !ok {
					msgs, space = nil, ch // hold the reader until events are settled
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-space:
		case <-wake:
			if m.pull != nil {
				m.flush(ctx)
			}
			gained := m.follow(ctx, v)
			if m.pull != nil {
				m.pull.sync(m.owned)
			}
			m.held.Store(int32(len(m.owned)))
			switch {
			case gained, m.reread, r == nil && len(m.owned) > 0:
				m.reread = false
				restart()
			case r != nil && len(m.owned) == 0:
				r.stop()
				r = nil
			}
		case msg, ok := <-msgs:
			if !ok {
				restart() // the reader failed; start again from the positions
				continue
			}
			batch := []jetstream.Msg{msg}
		drain:
			for len(batch) < readerBuffer {
				select {
				case msg, ok := <-msgs:
					if !ok {
						break drain
					}
					batch = append(batch, msg)
				default:
					break drain
				}
			}
			m.process(ctx, batch)
			m.markRead(ctx, batch[len(batch)-1])
		}
	}
}

// markRead records msg, the last of a processed batch, as read, unless
// the batch was cut short and the reader starts again.
func (m *Member) markRead(ctx context.Context, msg jetstream.Msg) {
	if m.reread || ctx.Err() != nil || m.pull != nil {
		// At least once, an event read is not settled: the committed
		// positions alone say what is left (they pass what was read once
		// a partition has nothing unsettled).
		return
	}
	if md, err := msg.Metadata(); err == nil {
		m.read.Store(md.Sequence.Stream)
	}
}

// startSeq is where the reader starts: the lowest position among the
// owned partitions (a partition that applied nothing yet starts at 1).
func (m *Member) startSeq() uint64 {
	start := uint64(0)
	first := true
	for _, o := range m.owned {
		if first || o.next.seq < start {
			start, first = o.next.seq, false
		}
	}
	return max(start, 1)
}

// follow reads the assignment, drops the partitions no longer assigned to
// this member and takes the new ones; it reports whether it took any.
func (m *Member) follow(ctx context.Context, v *view) (gained bool) {
	a, _ := v.assignment()
	mine := map[int]bool{}
	for p, o := range a.Owners {
		if o == m.opts.Member && p < m.opts.Partitions {
			mine[p] = true
		}
	}
	for p := range m.owned {
		if !mine[p] {
			delete(m.owned, p)
		}
	}
	for p := range mine {
		if m.owned[p] != nil {
			continue
		}
		o, err := m.take(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Debug("take partition", "partition", p, "err", err)
			}
			continue // the former owner is still committing; next tick
		}
		m.owned[p] = o
		gained = true
	}
	return gained
}

// take fences partition p: it writes epoch+1 with this member as owner,
// expecting the revision it read.
func (m *Member) take(ctx context.Context, p int) (*owned, error) {
	key := posKey(m.opts.Group, p)
	e, err := m.opts.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	var pos position
	if e.Found {
		if pos, err = decode[position](key, e.Value); err != nil {
			return nil, err
		}
	}
	pos.Epoch++
	pos.Owner = m.opts.Member
	m.read.Store(0) // the reader starts again from the positions
	v, _ := json.Marshal(pos)
	if _, err := m.opts.Store.Commit(ctx, txn.Commit{Reads: map[string]uint64{key: e.Revision}, Writes: map[string][]byte{key: v}}); err != nil {
		return nil, err
	}
	m.log.Debug("took partition", "partition", p, "epoch", pos.Epoch, "at", pos.at())
	return &owned{epoch: pos.Epoch, next: pos.at()}, nil
}

// retryBackoff spaces attempts to apply a batch that failed for a reason
// other than fencing.
var retryBackoff = jsapi.Backoff{Base: 20 * time.Millisecond, Max: time.Second}
