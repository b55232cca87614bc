package consume

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// view is a member's picture of its group, kept by a kvfollow.Follower
// on the group's member keys and assign key: which members renewed
// their key within TTL (on this member's own clock, as a lease judges
// its holder, so no two hosts' clocks are compared), and the current
// assignment with its revision.
type view struct {
	group string
	ttl   time.Duration

	mu        sync.Mutex
	seen      map[string]time.Time // member -> when its key last changed, here
	assign    assignment
	assignRev uint64
}

func newView(group string, ttl time.Duration) *view {
	return &view{group: group, ttl: ttl, seen: map[string]time.Time{}}
}

// filters are the keys the view follows.
func (v *view) filters() []string {
	return []string{memberKey(v.group, "*"), groupKey(v.group, "assign")}
}

func (v *view) put(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Key() == groupKey(v.group, "assign") {
		a, err := decode[assignment](e.Key(), e.Value())
		if err != nil {
			a = assignment{} // replaced at the next rebalance
		}
		v.assign, v.assignRev = a, e.Revision()
		return
	}
	if id, ok := strings.CutPrefix(e.Key(), memberKey(v.group, "")); ok {
		v.seen[id] = time.Now()
	}
}

func (v *view) del(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Key() == groupKey(v.group, "assign") {
		v.assign, v.assignRev = assignment{}, e.Revision()
		return
	}
	if id, ok := strings.CutPrefix(e.Key(), memberKey(v.group, "")); ok {
		delete(v.seen, id)
	}
}

// members returns the members that renewed within TTL of now, sorted.
func (v *view) members(now time.Time) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for id, at := range v.seen {
		if now.Sub(at) < v.ttl {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// assignment returns the current assignment and its revision (0: none).
func (v *view) assignment() (assignment, uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.assign, v.assignRev
}

// owner returns the owner of partition p in the current assignment.
func (v *view) owner(p int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p < len(v.assign.Owners) {
		return v.assign.Owners[p]
	}
	return ""
}

// filtered makes a bucket's WatchAll watch only some keys, so a
// kvfollow.Follower follows them alone.
type filtered struct {
	jetstream.KeyValue
	keys []string
}

func (f filtered) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return f.WatchFiltered(ctx, f.keys, opts...)
}
