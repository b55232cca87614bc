package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// ErrUnknownGroup means no group of that name exists: no member ever
// joined it (its config key is absent).
var ErrUnknownGroup = errors.New("consume: unknown group")

// Scan bounds of Status: beyond them the lag in events is a lower bound
// (PartitionStatus.Exact false).
const (
	// scanMessages is the most stream messages one Status call reads.
	scanMessages = 2000
	// scanEvents is the most events one Status call decodes.
	scanEvents = 200_000
	// scanTime bounds the scan's time.
	scanTime = 2 * time.Second
)

// GroupStatus is a group as its keys in the store and stream EVENTS show
// it at one moment.
type GroupStatus struct {
	// Group is the group's name.
	Group string `json:"group"`
	// Partitions is the group's partition count.
	Partitions int `json:"partitions"`
	// Filter is the subjects of EVENTS the group reads.
	Filter []string `json:"filter"`
	// Members lists the live members (their keys not yet expired), sorted.
	Members []string `json:"members"`
	// Head is the last sequence of EVENTS matching Filter (0: none).
	Head uint64 `json:"head"`
	// LagEvents is the sum of the partitions' LagEvents.
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is the largest of the partitions' LagSeconds.
	LagSeconds float64 `json:"lag_seconds"`
	// Exact reports whether every partition's lag is exact.
	Exact bool `json:"exact"`
	// PerPartition holds each partition's status, by partition.
	PerPartition []PartitionStatus `json:"per_partition"`
	// At is when the status was taken.
	At time.Time `json:"at"`
}

// PartitionStatus is one partition of a group.
//
// Lag is counted from the partition's effective position: its committed
// position, or past the last stream message its owner has read (the
// "read" mark the owner renews with its membership, at most TTL/4 old),
// whichever is later. A partition without events for a while keeps an
// old committed position (nothing to commit), yet its owner has read
// past the other partitions' events; the read mark keeps such a
// partition from looking behind.
type PartitionStatus struct {
	// Partition is the partition's number.
	Partition int `json:"partition"`
	// Assigned is the member the current assignment gives it ("" none).
	Assigned string `json:"assigned"`
	// Owner is the member that took it last (the position key's owner;
	// it applies events while Assigned names it too).
	Owner string `json:"owner"`
	// Epoch is the owner's fencing epoch.
	Epoch uint64 `json:"epoch"`
	// Seq and Index are the committed position: the next event to apply
	// (every event before it is applied).
	Seq   uint64 `json:"seq"`
	Index int    `json:"index"`
	// Read is the owner's read mark: the last stream message it has read
	// and applied its partitions' events of (0: none known).
	Read uint64 `json:"read"`
	// LagMessages is how many stream messages matching the filter lie at
	// or after the effective position: the messages the partition still
	// has to look through. With envelopes a message holds many events,
	// most of other partitions; it is an upper bound of the messages
	// holding the partition's own pending events.
	LagMessages uint64 `json:"lag_messages"`
	// LagEvents is how many of the partition's events at or after the
	// effective position were found by decoding those messages: exact
	// when Exact, otherwise a lower bound (the scan stopped at its
	// bounds).
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is the age of the partition's first unapplied event
	// (its stream timestamp), 0 when caught up. When not Exact and no
	// event of the partition was found within the scan's bounds, it is 0:
	// a lower bound. (An upper bound, the age of the last message
	// scanned, would make an idle partition far behind the head, as an
	// at-least-once group's can be, look late and raise alerts.)
	LagSeconds float64 `json:"lag_seconds"`
	// Exact reports whether the scan reached the head.
	Exact bool `json:"exact"`
}

// Groups returns the names of the groups in the store's bucket (those
// with a config key), sorted.
func Groups(ctx context.Context, store *txn.Store) ([]string, error) {
	js, err := jetstream.New(store.Conn())
	if err != nil {
		return nil, fmt.Errorf("consume: groups: %w", err)
	}
	kv, err := js.KeyValue(ctx, store.Bucket())
	if err != nil {
		return nil, fmt.Errorf("consume: groups: bucket %s: %w", store.Bucket(), err)
	}
	l, err := kv.ListKeysFiltered(ctx, KeyPrefix+"*.config")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consume: groups: %w", err)
	}
	defer func() { _ = l.Stop() }()
	var out []string
	for k := range l.Keys() {
		g, ok := strings.CutPrefix(k, KeyPrefix)
		if g, ok2 := strings.CutSuffix(g, ".config"); ok && ok2 {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Status returns group's status: config, live members, and each
// partition's owner, committed position and lag (see PartitionStatus
// for what the lag counts). An unknown group gives ErrUnknownGroup. It
// reads the group's keys, the stream head, and, when a partition is
// behind the head, decodes the messages from the lowest effective
// position on, within fixed bounds (2000 messages, 200k events, 2s).
func Status(ctx context.Context, js jetstream.JetStream, store *txn.Store, group string) (GroupStatus, error) {
	if !validName(group) {
		return GroupStatus{}, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	ckey := groupKey(group, "config")
	ce, err := store.Get(ctx, ckey)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("consume: status %s: %w", group, err)
	}
	if !ce.Found {
		return GroupStatus{}, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	cfg, err := decodeConfig(group, ckey, ce.Value)
	if err != nil {
		return GroupStatus{}, err
	}
	st := GroupStatus{Group: group, Partitions: cfg.Partitions, Filter: cfg.Filter, Exact: true, At: time.Now()}

	members, err := liveMembers(ctx, js, store.Bucket(), group)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("consume: status %s: %w", group, err)
	}
	for id := range members {
		st.Members = append(st.Members, id)
	}
	slices.Sort(st.Members)

	keys := []string{groupKey(group, "assign")}
	for p := range cfg.Partitions {
		keys = append(keys, posKey(group, p))
	}
	es, err := store.GetMany(ctx, keys)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("consume: status %s: %w", group, err)
	}
	var a assignment
	if e := es[keys[0]]; e.Found {
		if a, err = decode[assignment](keys[0], e.Value); err != nil {
			return GroupStatus{}, err
		}
	}
	st.Head, err = head(ctx, js.Conn(), cfg.Filter)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("consume: status %s: %w", group, err)
	}

	eff := make([]cursor, cfg.Partitions)
	for p := range cfg.Partitions {
		ps := PartitionStatus{Partition: p}
		if p < len(a.Owners) {
			ps.Assigned = a.Owners[p]
		}
		if e := es[posKey(group, p)]; e.Found {
			pos, err := decode[position](e.Key, e.Value)
			if err != nil {
				return GroupStatus{}, err
			}
			ps.Owner, ps.Epoch, ps.Seq, ps.Index = pos.Owner, pos.Epoch, pos.Seq, pos.Index
		}
		eff[p] = cursor{max(ps.Seq, 1), ps.Index}
		if ps.Seq == 0 {
			eff[p] = cursor{1, 0}
		}
		// The read mark counts only while the position's owner is also
		// the assigned one: it is then reading the partition.
		if mb, ok := members[ps.Owner]; ok && ps.Owner != "" && ps.Owner == ps.Assigned {
			ps.Read = mb.Read
			if c := (cursor{mb.Read + 1, 0}); eff[p].less(c) {
				eff[p] = c
			}
		}
		st.PerPartition = append(st.PerPartition, ps)
	}
	if err := scanLag(ctx, js, &st, eff); err != nil {
		return GroupStatus{}, fmt.Errorf("consume: status %s: %w", group, err)
	}
	for _, ps := range st.PerPartition {
		st.LagEvents += ps.LagEvents
		st.LagSeconds = max(st.LagSeconds, ps.LagSeconds)
		st.Exact = st.Exact && ps.Exact
	}
	return st, nil
}

// liveMembers reads the group's member keys (expired ones are gone:
// their message TTL removed them).
func liveMembers(ctx context.Context, js jetstream.JetStream, bucket, group string) (map[string]member, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchFiltered(ctx, []string{memberKey(group, "*")}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]member{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil
			}
			id := strings.TrimPrefix(e.Key(), memberKey(group, ""))
			mb, err := decode[member](e.Key(), e.Value())
			if err != nil {
				continue // a member key someone else wrote: not a member
			}
			out[id] = mb
		}
	}
}

// head returns the last sequence of EVENTS on any of the filter's
// subjects (0 when none).
func head(ctx context.Context, nc *nats.Conn, filter []string) (uint64, error) {
	var h uint64
	for _, f := range filter {
		m, err := jsapi.GetMsg(ctx, nc, streams.Events, jsapi.GetRequest{LastBySubject: f}, jsapi.Leader)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue
		case err != nil:
			return 0, fmt.Errorf("head of %s: %w", f, err)
		}
		h = max(h, m.Seq)
	}
	return h, nil
}

// scanLag fills each partition's lag: it reads the filter's messages from
// the lowest effective position behind the head, decodes them, and
// counts each partition's events at or after its effective position.
func scanLag(ctx context.Context, js jetstream.JetStream, st *GroupStatus, eff []cursor) error {
	from := uint64(0)
	for p := range st.PerPartition {
		ps := &st.PerPartition[p]
		ps.Exact = true
		if eff[p].seq <= st.Head && (from == 0 || eff[p].seq < from) {
			from = eff[p].seq
		}
	}
	if from == 0 {
		return nil // every partition is past the head: no lag
	}
	ctx, cancel := context.WithTimeout(ctx, scanTime)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{
		FilterSubjects: st.Filter,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", streams.Events, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("scan %s: %w", streams.Events, err)
	}
	defer it.Stop()

	reached := make([]bool, len(eff)) // a message at or after eff[p] was seen
	first := make([]time.Time, len(eff))
	var (
		lastSeq    uint64
		nmsg, nevs int
		complete   bool
	)
	for nmsg < scanMessages && nevs < scanEvents {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			break // the bounds' time, or the stream went away: not complete
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := md.Sequence.Stream
		nmsg++
		lastSeq = seq
		for p := range eff {
			if !reached[p] && eff[p].seq <= seq {
				reached[p] = true
				st.PerPartition[p].LagMessages = md.NumPending + 1
			}
		}
		evs, err := replicator.Decode(msg.Subject(), seq, md.Timestamp, msg.Headers(), msg.Data())
		if err == nil {
			nevs += len(evs)
			for _, ev := range evs {
				p := Partition(Key(ev), len(eff))
				if cursorOf(ev.Pos).less(eff[p]) {
					continue
				}
				st.PerPartition[p].LagEvents++
				if first[p].IsZero() {
					first[p] = md.Timestamp
				}
			}
		}
		if md.NumPending == 0 || seq >= st.Head {
			complete = true
			break
		}
	}
	for p := range eff {
		ps := &st.PerPartition[p]
		if !first[p].IsZero() {
			ps.LagSeconds = max(0, st.At.Sub(first[p]).Seconds())
		}
		if eff[p].seq > st.Head {
			continue // past the head: nothing pending, exactly
		}
		if !complete {
			ps.Exact = false
			if !reached[p] || eff[p].seq > lastSeq {
				// Not reached: count the sequence range, exact when the
				// filter covers the whole stream.
				ps.LagMessages = st.Head - eff[p].seq + 1
			}
		}
	}
	return nil
}
