package replicator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// allWaiter holds events acknowledged at Quorum until every replica of
// their stream has them, for level All.
//
// How it knows: the stream leader answers $JS.API.STREAM.INFO, and for each
// follower reports lag = the leader's RAFT commit index minus the last
// index that follower has persisted (nats-server raft.go, Peers). The
// leader commits an entry before it applies it and sends the PubAck, so in
// an info requested after an event's PubAck, a follower with lag 0 that is
// not offline has persisted that event. The lag counts RAFT entries, and
// one entry may carry many messages, so no lag other than 0 says which
// sequence a follower holds, and the leader's commit index is not
// published.
//
// Each follower is judged on its own: an event is settled once every
// follower has shown lag 0 in some info requested after the event's ack,
// not necessarily in the same one. Under sustained writes every follower
// keeps catching up (its lag drops to 0 as its fsync completes) but rarely
// all of them at the same instant, which is what a single-snapshot check
// would wait for. One info request serves every waiting event of a stream,
// and requests are made only while some event waits.
type allWaiter struct {
	allOptions
	mu     sync.Mutex
	wait   []allItem
	checks uint64 // checks started so far
	wake   chan struct{}
	// seen is, per stream and follower, the number of the last check in
	// which the follower had lag 0; only the loop's goroutine uses it.
	seen map[string]map[string]uint64
}

// allOptions is what an allWaiter is handed.
type allOptions struct {
	// info asks a stream's leader for the stream's info; only the
	// waiter's loop calls it.
	info func(ctx context.Context, stream string) (*jetstream.StreamInfo, error)
	// resolve reports an event's outcome.
	resolve func(e *pending, ack Ack, err error)
	// deadline is how long events may wait for the replicas.
	deadline time.Duration
	// poll is the pause between two checks while events wait.
	poll time.Duration
	// failed counts failed events by reason; the waiter's is
	// replicas_behind.
	failed *prometheus.CounterVec
}

type allItem struct {
	stream string
	seq    uint64
	events []*pending
	acks   []Ack
	since  time.Time
	// after is the number of the first check started after the item was
	// added: only checks numbered after or equal count for it.
	after uint64
}

func newAllWaiter(o allOptions) *allWaiter {
	return &allWaiter{allOptions: o, wake: make(chan struct{}, 1), seen: map[string]map[string]uint64{}}
}

// streamInfos returns an info function for an allWaiter that keeps one
// handle per stream, so that each check costs one request. Like the
// waiter's loop that calls it, it is not safe for concurrent use.
func streamInfos(js jetstream.JetStream) func(ctx context.Context, stream string) (*jetstream.StreamInfo, error) {
	handles := map[string]jetstream.Stream{}
	return func(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
		s, ok := handles[name]
		if !ok {
			var err error
			if s, err = js.Stream(ctx, name); err != nil {
				return nil, err
			}
			handles[name] = s
		}
		return s.Info(ctx)
	}
}

func (a *allWaiter) add(stream string, seq uint64, events []*pending, acks []Ack) {
	a.mu.Lock()
	a.wait = append(a.wait, allItem{stream: stream, seq: seq, events: events, acks: acks, since: time.Now(), after: a.checks + 1})
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// loop checks while events wait, until stop is closed.
func (a *allWaiter) loop(stop <-chan struct{}) {
	t := time.NewTicker(a.poll)
	defer t.Stop()
	for {
		a.mu.Lock()
		n := len(a.wait)
		a.mu.Unlock()
		if n == 0 {
			select {
			case <-stop:
				return
			case <-a.wake:
			}
		}
		a.check()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// check takes the waiting events, asks each of their streams once, and
// settles those whose followers have all caught up since their ack, or
// whose deadline passed.
func (a *allWaiter) check() {
	a.mu.Lock()
	items := a.wait
	a.wait = nil
	a.checks++
	id := a.checks
	a.mu.Unlock()
	if len(items) == 0 {
		return
	}
	followers := map[string][]string{} // per stream, or nil with an error
	errs := map[string]error{}
	for _, it := range items {
		if _, ok := errs[it.stream]; !ok {
			followers[it.stream], errs[it.stream] = a.observe(it.stream, id)
		}
	}
	var keep []allItem
	for _, it := range items {
		behind := errs[it.stream]
		if behind == nil {
			behind = a.behind(it, followers[it.stream])
		}
		switch {
		case behind == nil:
			for i, e := range it.events {
				a.resolve(e, it.acks[i], nil)
			}
		case time.Since(it.since) > a.deadline:
			a.failed.WithLabelValues("replicas_behind").Inc()
			for i, e := range it.events {
				a.resolve(e, it.acks[i], fmt.Errorf("stream %s seq %d: %w: %v", it.stream, it.seq, ErrReplicasBehind, behind))
			}
		default:
			keep = append(keep, it)
		}
	}
	if len(keep) > 0 {
		a.mu.Lock()
		a.wait = append(keep, a.wait...)
		a.mu.Unlock()
	}
}

// observe asks the stream's leader for its info in check number id,
// records which followers had lag 0, and returns the followers.
func (a *allWaiter) observe(name string, id uint64) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := a.info(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream info %s: %w", name, err)
	}
	want := info.Config.Replicas - 1
	if want <= 0 {
		return nil, nil
	}
	if info.Cluster == nil {
		return nil, fmt.Errorf("no cluster information for an R%d stream", info.Config.Replicas)
	}
	if info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream has no leader")
	}
	if len(info.Cluster.Replicas) < want {
		return nil, fmt.Errorf("%d of %d followers known", len(info.Cluster.Replicas), want)
	}
	seen := a.seen[name]
	if seen == nil {
		seen = map[string]uint64{}
		a.seen[name] = seen
	}
	names := make([]string, 0, len(info.Cluster.Replicas))
	for _, r := range info.Cluster.Replicas {
		names = append(names, r.Name)
		if r.Current && !r.Offline && r.Lag == 0 {
			seen[r.Name] = id
		}
	}
	return names, nil
}

// behind returns nil when every follower had lag 0 in a check that began
// after the item's ack, else which ones have not.
func (a *allWaiter) behind(it allItem, followers []string) error {
	var late []string
	for _, f := range followers {
		if a.seen[it.stream][f] < it.after {
			late = append(late, f)
		}
	}
	if len(late) > 0 {
		return fmt.Errorf("followers %v not caught up since the ack", late)
	}
	return nil
}

func (a *allWaiter) failAll(err error) {
	a.mu.Lock()
	items := a.wait
	a.wait = nil
	a.mu.Unlock()
	for _, it := range items {
		for i, e := range it.events {
			a.resolve(e, it.acks[i], err)
		}
	}
}
