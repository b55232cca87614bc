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
// leader commits an entry before it applies it and sends the PubAck, so for
// an info requested after an event's PubAck, a follower with lag 0 that is
// not offline has persisted that event. One info request settles every
// event acknowledged before it was sent, so the check is shared by all
// waiting events and polled only while some wait.
type allWaiter struct {
	allOptions
	mu   sync.Mutex
	wait []allItem
	wake chan struct{}
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
}

func newAllWaiter(o allOptions) *allWaiter {
	return &allWaiter{allOptions: o, wake: make(chan struct{}, 1)}
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
	a.wait = append(a.wait, allItem{stream: stream, seq: seq, events: events, acks: acks, since: time.Now()})
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
// settles those whose stream is caught up or whose deadline passed.
func (a *allWaiter) check() {
	a.mu.Lock()
	items := a.wait
	a.wait = nil
	a.mu.Unlock()
	if len(items) == 0 {
		return
	}
	caught := map[string]error{}
	for _, it := range items {
		if _, ok := caught[it.stream]; !ok {
			caught[it.stream] = a.caughtUp(it.stream)
		}
	}
	var keep []allItem
	for _, it := range items {
		err := caught[it.stream]
		switch {
		case err == nil:
			for i, e := range it.events {
				a.resolve(e, it.acks[i], nil)
			}
		case time.Since(it.since) > a.deadline:
			a.failed.WithLabelValues("replicas_behind").Inc()
			for i, e := range it.events {
				a.resolve(e, it.acks[i], fmt.Errorf("stream %s seq %d: %w: %v", it.stream, it.seq, ErrReplicasBehind, err))
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

// caughtUp returns nil when every replica of the stream is current.
func (a *allWaiter) caughtUp(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := a.info(ctx, name)
	if err != nil {
		return fmt.Errorf("stream info %s: %w", name, err)
	}
	return replicasCurrent(info)
}

// replicasCurrent checks a stream info answered by the leader.
func replicasCurrent(info *jetstream.StreamInfo) error {
	want := info.Config.Replicas - 1
	if want <= 0 {
		return nil
	}
	if info.Cluster == nil {
		return fmt.Errorf("no cluster information for an R%d stream", info.Config.Replicas)
	}
	if info.Cluster.Leader == "" {
		return fmt.Errorf("stream has no leader")
	}
	current := 0
	var behind []string
	for _, r := range info.Cluster.Replicas {
		if r.Current && !r.Offline && r.Lag == 0 {
			current++
		} else {
			behind = append(behind, fmt.Sprintf("%s(lag %d, offline %t)", r.Name, r.Lag, r.Offline))
		}
	}
	if current < want {
		return fmt.Errorf("%d of %d followers current; behind: %v", current, want, behind)
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
