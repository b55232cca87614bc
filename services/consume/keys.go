package consume

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// KeyPrefix starts every key a group keeps in the store's bucket:
//
//	_consume.<group>.config        the partition count and filter
//	_consume.<group>.assign        the current assignment (written by the leader)
//	_consume.<group>.member.<id>   a live member (a message TTL ends it)
//	_consume.<group>.pos.<p>       partition p's position, epoch and owner
//
// Handlers must not write under it.
const KeyPrefix = streams.ConsumeKeyPrefix

func groupKey(group, rest string) string { return KeyPrefix + group + "." + rest }
func posKey(group string, p int) string  { return groupKey(group, "pos."+strconv.Itoa(p)) }
func memberKey(group, id string) string  { return groupKey(group, "member."+id) }

// leaseKey is the group's key in bucket LEASES: its holder computes the
// assignment.
func leaseKey(group string) string { return "consume." + group }

// position is the value of a partition's position key: the next event to
// apply (every event before it was applied), and the epoch and member of
// the partition's current owner. A member that takes a partition writes
// epoch+1 under the revision it read; every commit of the owner expects
// the revision it last wrote, so a former owner's commit is refused.
type position struct {
	Seq   uint64 `json:"seq"`
	Index int    `json:"index"`
	Epoch uint64 `json:"epoch"`
	Owner string `json:"owner"`
}

// at is the position's next event.
func (p position) at() cursor { return cursor{p.Seq, p.Index} }

// cursor is an event's place in the stream: message sequence, index in
// the envelope.
type cursor struct {
	seq   uint64
	index int
}

func (c cursor) less(d cursor) bool {
	return c.seq < d.seq || c.seq == d.seq && c.index < d.index
}

func cursorOf(p replicator.Position) cursor { return cursor{p.Seq, p.Index} }

// after is the cursor right after the event at p.
func after(p replicator.Position) cursor {
	n := p.Next()
	return cursor{n.Seq, n.Index}
}

// assignment is the value of the assign key.
type assignment struct {
	// Owners holds the owner of each partition ("" for none).
	Owners []string `json:"owners"`
	// Members lists the live members it was computed from.
	Members []string `json:"members"`
}

// config is the value of the config key.
type config struct {
	Partitions int      `json:"partitions"`
	Filter     []string `json:"filter"`
	// MaxDeliver and AckWaitMS are the at-least-once settings (0: the
	// defaults); a group created before they existed has neither.
	MaxDeliver int   `json:"max_deliver,omitempty"`
	AckWaitMS  int64 `json:"ack_wait_ms,omitempty"`
}

// member is the value of a member key.
type member struct {
	Member string `json:"member"`
	TTLMS  int64  `json:"ttl_ms"`
	// Instance names this run of the member in its heartbeats to the
	// detector (HeartbeatService); empty when it sends none.
	Instance string `json:"instance,omitempty"`
	// Read is the last stream message the member has read and applied
	// its partitions' events of, since its reader last started (0:
	// none); Status counts lag from it for partitions without events.
	Read uint64 `json:"read,omitempty"`
}

func encodePosition(p position) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("consume: encode position: %w", err)
	}
	return b, nil
}

func decode[T any](key string, b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("consume: decode %s: %w", key, err)
	}
	return v, nil
}

// Key returns an event's partition key: its Platform-Key header, or its
// topic (the subject without events.).
func Key(ev replicator.Event) string { return replicator.EventKey(ev.Subject, ev.Header) }

// Partition returns the partition of key among n: FNV-1a of the key,
// modulo n.
func Partition(key string, n int) int { return int(replicator.KeyHash(key) % uint32(n)) }
