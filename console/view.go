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

// page sorts list by the query's field, ties broken by tie (the list's
// key, so pages are stable), the whole order reversed for desc, and
// returns the asked slice of it.
func (p pageQuery[T]) page(list []T, tie func(a, b T) int) []T {
	slices.SortFunc(list, func(a, b T) int {
		c := p.by.cmp(a, b)
		if c == 0 {
			c = tie(a, b)
		}
		if p.desc {
			return -c
		}
		return c
	})
	lo := min(p.offset, len(list))
	return list[lo:min(lo+p.limit, len(list))]
}
