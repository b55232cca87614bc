package console

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/kvfollow"
)

// kvView is a KV bucket in memory, one T per key, kept by a
// kvfollow.Follower, so a page of it costs no NATS round trip whatever
// the bucket holds. The members and balancer pages each keep one.
type kvView[T any] struct {
	bucket string

	mu     sync.RWMutex
	synced <-chan struct{} // the follower's; nil until it started
	all    map[string]T
}

func newKVView[T any](bucket string) *kvView[T] {
	return &kvView[T]{bucket: bucket, all: map[string]T{}}
}

// set replaces key's value with what f makes of the old one (found
// false and old the zero T for a new key), under the write lock.
func (v *kvView[T]) set(key string, f func(old T, found bool) T) {
	v.mu.Lock()
	defer v.mu.Unlock()
	old, ok := v.all[key]
	v.all[key] = f(old, ok)
}

// remove forgets a deleted or purged key.
func (v *kvView[T]) remove(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	delete(v.all, e.Key())
	v.mu.Unlock()
}

// ready returns nil once the view holds everything the bucket held when
// the follower started, else a 503 saying why not.
func (v *kvView[T]) ready() error {
	v.mu.RLock()
	s := v.synced
	v.mu.RUnlock()
	if s == nil {
		return unavailable("KV %s is not followed yet", v.bucket)
	}
	select {
	case <-s:
		return nil
	default:
		return unavailable("KV %s is still being read", v.bucket)
	}
}

// follow keeps v following its bucket until ctx ends, retrying while the
// bucket is missing or NATS is away. put is called with every value
// written, in revision order, from one goroutine.
func follow[T any](ctx context.Context, js jetstream.JetStream, log *slog.Logger, v *kvView[T], put func(e jetstream.KeyValueEntry)) {
	for attempt := 0; ; attempt++ {
		kv, err := js.KeyValue(ctx, v.bucket)
		var f *kvfollow.Follower
		if err == nil {
			f, err = kvfollow.Start(ctx, kv, kvfollow.Options{Put: put, Delete: v.remove, Logger: log})
		}
		if err == nil {
			v.mu.Lock()
			v.synced = f.Synced()
			v.mu.Unlock()
			<-f.Closed()
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Debug("follow KV", "bucket", v.bucket, "err", err)
		if jsapi.Sleep(ctx, jsapi.Backoff{Base: 200 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt)) != nil {
			return
		}
	}
}

// maxOffset bounds the offset of a paged list.
const maxOffset = 10_000_000

// sortKey is one sort field a paged list offers.
type sortKey[T any] struct {
	name string
	cmp  func(a, b T) int
}

// pageQuery is how a paged list is asked for: sort field, order, offset
// and limit, each bounded.
type pageQuery[T any] struct {
	by     sortKey[T]
	desc   bool
	offset int
	limit  int
}

// readPage reads sort, order, offset and limit: sort one of sorts (the
// first is the default), order asc (default) or desc, offset
// 0..maxOffset, limit 1..maxLimit (default 100).
func readPage[T any](r *http.Request, sorts []sortKey[T], maxLimit int) (pageQuery[T], error) {
	var p pageQuery[T]
	q := r.URL.Query()
	name := q.Get("sort")
	if name == "" {
		name = sorts[0].name
	}
	i := slices.IndexFunc(sorts, func(s sortKey[T]) bool { return s.name == name })
	if i < 0 {
		names := make([]string, len(sorts))
		for j, s := range sorts {
			names[j] = s.name
		}
		return p, badRequest("sort %q: want one of %s", name, strings.Join(names, ", "))
	}
	p.by = sorts[i]
	switch order := q.Get("order"); order {
	case "", "asc":
	case "desc":
		p.desc = true
	default:
		return p, badRequest("order %q: want asc or desc", order)
	}
	offset, err := intParam(r, "offset", 0, 0, maxOffset)
	if err != nil {
		return p, err
	}
	limit, err := intParam(r, "limit", 100, 1, int64(maxLimit))
	if err != nil {
		return p, err
	}
	p.offset, p.limit = int(offset), int(limit)
	return p, nil
}

// compare orders two items as the page asks: by the query's field, ties
// broken by tie (the list's key, so pages are stable), the whole order
// reversed for desc.
func (p pageQuery[T]) compare(tie func(a, b T) int) func(a, b T) int {
	return func(a, b T) int {
		c := p.by.cmp(a, b)
		if c == 0 {
			c = tie(a, b)
		}
		if p.desc {
			return -c
		}
		return c
	}
}

// page returns the asked slice of list in the page's order (compare),
// reordering list. A page near the top of a long list (the usual case:
// the first page of 10,000 instances) selects the first offset+limit
// items with a bounded heap, about one comparison per item, instead of
// sorting the whole list.
func (p pageQuery[T]) page(list []T, tie func(a, b T) int) []T {
	cmp := p.compare(tie)
	lo := min(p.offset, len(list))
	hi := min(lo+p.limit, len(list))
	if lo == hi {
		return list[:0]
	}
	if hi >= len(list)/4 {
		slices.SortFunc(list, cmp)
		return list[lo:hi]
	}
	top := firstN(list, hi, cmp)
	return top[lo:hi]
}

// firstN reorders list so that its first n items are, sorted, the n
// first in cmp's order, and returns them. It keeps the n first seen so
// far in a max-heap at the front of list.
func firstN[T any](list []T, n int, cmp func(a, b T) int) []T {
	h := list[:n]
	for i := n/2 - 1; i >= 0; i-- {
		siftDown(h, i, cmp)
	}
	rest := list[n:]
	for i, x := range rest {
		if cmp(x, h[0]) < 0 {
			h[0], rest[i] = x, h[0]
			siftDown(h, 0, cmp)
		}
	}
	slices.SortFunc(h, cmp)
	return h
}

// siftDown restores the max-heap h below i.
func siftDown[T any](h []T, i int, cmp func(a, b T) int) {
	for {
		big := i
		if l := 2*i + 1; l < len(h) && cmp(h[l], h[big]) > 0 {
			big = l
		}
		if r := 2*i + 2; r < len(h) && cmp(h[r], h[big]) > 0 {
			big = r
		}
		if big == i {
			return
		}
		h[i], h[big] = h[big], h[i]
		i = big
	}
}
