package pcgroupsbench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/consume/consumebench"
)

// tracker records, per topic, which instance was handed its latest event,
// when, and since when that instance has been the one.
type tracker struct {
	mu   sync.Mutex
	last map[string]seen
}

type seen struct {
	id    string
	at    time.Time
	since time.Time
}

func newTracker() *tracker { return &tracker{last: map[string]seen{}} }

// saw records that instance id was handed an event of subject's topic
// (its last token).
func (t *tracker) saw(subject, id string) {
	topic := subject[strings.LastIndexByte(subject, '.')+1:]
	now := time.Now()
	t.mu.Lock()
	s := t.last[topic]
	if s.id != id {
		s.id, s.since = id, now
	}
	s.at = now
	t.last[topic] = s
	t.mu.Unlock()
}

// owners returns the topics of each instance when the group is steady:
// every one of topics handed out within the last fresh, each by the same
// instance for at least hold, by exactly want instances.
func (t *tracker) owners(topics, want int, fresh, hold time.Duration) (map[string][]string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.last) < topics {
		return nil, false
	}
	now := time.Now()
	out := map[string][]string{}
	for topic, s := range t.last {
		if now.Sub(s.at) > fresh || now.Sub(s.since) < hold {
			return nil, false
		}
		out[s.id] = append(out[s.id], topic)
	}
	return out, len(out) == want
}

// taken returns which of topics have not yet been handed to an instance
// other than victim after t0.
func (t *tracker) taken(topics []string, victim string, t0 time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(topics), func(topic string) bool {
		s := t.last[topic]
		return s.id != victim && s.at.After(t0)
	})
}

// failover crashes one instance per round, the one handing out the
// events of the most topics at the time (ties by name), and measures how
// long until every topic it was handed is handed to another instance;
// then replace starts a replacement and the next round waits for the
// group to be steady again. kill crashes instance id.
func (r *Runner) failover(ctx context.Context, res *bench.Result, tr *tracker, kill func(id string), replace func(victim string) error) error {
	lat := &bench.Latencies{}
	prog := bench.NewProgress(r.o.Progress, res.Name, int64(r.o.Rounds))
	defer prog.Stop()
	within := 30*time.Second + 3*r.o.Detect
	for round := range r.o.Rounds {
		var owners map[string][]string
		deadline := time.Now().Add(within)
		for {
			o, ok := tr.owners(r.o.Topics, r.o.Members, 500*time.Millisecond, time.Second)
			if ok {
				owners = o
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("round %d: the group did not settle on %d instances handing out all %d topics in %s", round, r.o.Members, r.o.Topics, within)
			}
			if err := jsapi.Sleep(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
		ids := slices.Sorted(maps.Keys(owners))
		victim := ids[round%len(ids)]
		topics := owners[victim]
		t0 := time.Now()
		kill(victim)
		for left := topics; len(left) > 0; left = tr.taken(left, victim, t0) {
			if time.Since(t0) > within {
				return fmt.Errorf("round %d: topics %v of crashed %s not handed out again in %s", round, left, victim, within)
			}
			if err := jsapi.Sleep(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
		lat.Add(time.Since(t0))
		prog.Add(1)
		if err := replace(victim); err != nil {
			return err
		}
	}
	res.Finish(int64(r.o.Rounds), 0, lat)
	res.Extra = map[string]float64{"detect_s": r.o.Detect.Seconds()}
	return nil
}

// PCGroupsFailover is pcgroups' failover row. A static group's
// membership is fixed at creation, and an elastic group's changes only
// when an administrator says so: pcgroups moves no partition to another
// member when one dies. Its high availability is a second instance of
// each member, in hot standby: the server pins one instance per member
// consumer and, once the pinned one stops pulling for the pinned TTL
// (AckWait), pins another. So each member runs two instances; a round
// crashes the pinned one (its connection closes) and times until the
// standby is handed every topic the crashed one was; a new standby then
// replaces it.
func (r *Runner) PCGroupsFailover(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: fmt.Sprintf("pcgroups/crash-1-of-%d", r.o.Members)}
	const group = "failover"
	fctx, stopFeed := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.cb.Feed(fctx, pcgPrefix, r.o.FeedRate) })
	defer func() { stopFeed(); wg.Wait() }()
	if err := r.createStatic(ctx, group); err != nil {
		return res, err
	}
	defer r.deleteStatic(group)
	tr := newTracker()
	cfg := r.consumerConfig(jetstream.DeliverNewPolicy)
	ins := map[string]*pcgInstance{}
	defer func() {
		for _, p := range ins {
			p.stop()
		}
	}()
	next := map[string]int{}
	start := func(member string) error {
		id := fmt.Sprintf("%s-%d", member, next[member])
		next[member]++
		p, err := r.startPCG(ctx, group, member, id, cfg, func(m jetstream.Msg) {
			tr.saw(m.Subject(), id)
			_ = m.Ack()
		})
		if err != nil {
			return err
		}
		ins[id] = p
		return nil
	}
	for range 2 {
		for _, m := range r.memberNames() {
			if err := start(m); err != nil {
				return res, err
			}
		}
	}
	err := r.failover(ctx, &res, tr,
		func(id string) { ins[id].kill() },
		func(victim string) error {
			member := ins[victim].member
			delete(ins, victim)
			return start(member)
		})
	return res, err
}

// PlatformFailover is the platform's failover row: Members at-least-once
// members (TTL Detect) hand out events by Next and acknowledge each; a
// round crashes one (its connection closes, so it cannot leave) and
// times until every topic it was handed is handed to another member,
// which happens once its membership expires and the group reassigns its
// partitions; a new member then joins. No standby instances are needed.
func (r *Runner) PlatformFailover(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: fmt.Sprintf("platform/crash-1-of-%d", r.o.Members)}
	fctx, stopFeed := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.cb.Feed(fctx, failPrefix, r.o.FeedRate) })
	defer func() { stopFeed(); wg.Wait() }()
	tr := newTracker()
	base := consume.Options{Group: "benchpcgfail", Filter: []string{failPrefix + ">"}, AtLeastOnce: true,
		TTL: r.o.Detect, Partitions: r.o.Partitions}
	type running struct {
		m    *consumebench.Running
		stop context.CancelFunc
		done chan struct{}
	}
	ms := map[string]*running{}
	defer func() {
		for _, m := range ms {
			m.stop()
			<-m.done
			_ = m.m.Stop() // cleanup: the rounds reported already
		}
	}()
	next := 0
	start := func() error {
		id := fmt.Sprintf("f%d", next)
		next++
		m, err := r.cb.StartMember(ctx, base, id)
		if err != nil {
			return err
		}
		lctx, stop := context.WithCancel(ctx)
		rm := &running{m: m, stop: stop, done: make(chan struct{})}
		go func() {
			defer close(rm.done)
			for lctx.Err() == nil {
				ds, err := m.Next(lctx, 500, 100*time.Millisecond)
				if err != nil {
					return
				}
				for _, d := range ds {
					tr.saw(d.Event.Subject, id)
					_ = m.AckDelivery(d)
				}
			}
		}()
		ms[id] = rm
		return nil
	}
	for range r.o.Members {
		if err := start(); err != nil {
			return res, err
		}
	}
	err := r.failover(ctx, &res, tr,
		func(id string) {
			m := ms[id]
			m.stop()
			m.m.Kill()
			<-m.done
		},
		func(victim string) error {
			delete(ms, victim)
			return start()
		})
	return res, err
}
