package replicator

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters keeps one token bucket per key (a topic or a client). Buckets
// idle long enough to have refilled are forgotten by sweep, so the map
// stays as small as the set of recently active keys.
type limiters struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newLimiters returns nil (no limit) when perSecond is 0.
func newLimiters(perSecond float64, burst int) *limiters {
	if perSecond <= 0 {
		return nil
	}
	return &limiters{limit: rate.Limit(perSecond), burst: burst, m: map[string]*bucket{}}
}

// reserve takes one token for key; the reservation says how long the
// caller would have to wait. A nil limiters reserves nothing.
func (l *limiters) reserve(key string, now time.Time) *rate.Reservation {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	b := l.m[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = b
	}
	b.seen = now
	l.mu.Unlock()
	return b.lim.ReserveN(now, 1)
}

// sweep forgets buckets idle for longer than it takes them to refill.
func (l *limiters) sweep(now time.Time) {
	if l == nil {
		return
	}
	idle := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Minute
	l.mu.Lock()
	for k, b := range l.m {
		if now.Sub(b.seen) > idle {
			delete(l.m, k)
		}
	}
	l.mu.Unlock()
}

func (l *limiters) size() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// admit takes a token from both the topic's and the client's bucket. When
// either would make the event wait it takes none and returns the wait.
func admit(topics, clients *limiters, topic, client string, now time.Time) time.Duration {
	rt := topics.reserve(topic, now)
	rc := clients.reserve(client, now)
	var wait time.Duration
	for _, r := range []*rate.Reservation{rt, rc} {
		if r == nil {
			continue
		}
		if !r.OK() {
			wait = time.Hour
			continue
		}
		wait = max(wait, r.DelayFrom(now))
	}
	if wait > 0 {
		for _, r := range []*rate.Reservation{rt, rc} {
			if r != nil {
				r.CancelAt(now)
			}
		}
	}
	return wait
}
