package consumebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// MemberSpec is what a member process runs (RunMember).
type MemberSpec struct {
	// URL is the NATS URL list.
	URL string `json:"url"`
	// Group and ID name the group and the member.
	Group string `json:"group"`
	ID    string `json:"id"`
	// Filter is the group's filter subject.
	Filter string `json:"filter"`
	// TTL is the member's TTL.
	TTL time.Duration `json:"ttl"`
}

// RunMember runs one member of spec's group, adding each event's value to
// its topic's counter, until ctx ends.
func RunMember(ctx context.Context, spec MemberSpec) error {
	nc, err := nats.Connect(spec.URL, nats.MaxReconnects(-1), nats.DontRandomize())
	if err != nil {
		return err
	}
	defer nc.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := txn.NewStore(nc, txn.WithLogger(quiet))
	if err != nil {
		return err
	}
	m, err := consume.New(consume.Options{Conn: nc, Store: store, Group: spec.Group, Member: spec.ID,
		Filter: []string{spec.Filter}, TTL: spec.TTL, Handler: add(killPrefix), Logger: quiet})
	if err != nil {
		return err
	}
	return m.Run(ctx)
}

// proc is a member process.
type proc struct {
	id     string
	cmd    *exec.Cmd
	exited chan struct{}
}

func (r *Runner) startProc(group, id string) (*proc, error) {
	cmd := r.o.Member(MemberSpec{URL: r.t.URL, Group: group, ID: id, Filter: killPrefix + ">", TTL: r.o.TTL})
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start member %s: %w", id, err)
	}
	p := &proc{id: id, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop ends the process with SIGTERM (SIGKILL after 10s) and waits, so
// its CPU time counts among this process's children.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// groupKeys reads a group's assignment and positions (the documented
// values of _consume.<group>.assign and .pos.<p>).
type groupKeys struct {
	store *txn.Store
	group string
	parts int
}

type assignKey struct {
	Owners  []string `json:"owners"`
	Members []string `json:"members"`
}

type posKey struct {
	Seq   uint64 `json:"seq"`
	Epoch uint64 `json:"epoch"`
	Owner string `json:"owner"`
}

func (g groupKeys) read(ctx context.Context) (assignKey, []posKey, error) {
	keys := []string{consume.KeyPrefix + g.group + ".assign"}
	for p := range g.parts {
		keys = append(keys, consume.KeyPrefix+g.group+".pos."+strconv.Itoa(p))
	}
	es, err := g.store.GetMany(ctx, keys)
	if err != nil {
		return assignKey{}, nil, err
	}
	var a assignKey
	if e := es[keys[0]]; e.Found {
		_ = json.Unmarshal(e.Value, &a)
	}
	pos := make([]posKey, g.parts)
	for p := range g.parts {
		if e := es[keys[p+1]]; e.Found {
			_ = json.Unmarshal(e.Value, &pos[p])
		}
	}
	return a, pos, nil
}

// settled waits until the assignment lists exactly members and every
// partition is taken by its assigned member; it returns the assignment.
func (g groupKeys) settled(ctx context.Context, members []string, within time.Duration) (assignKey, error) {
	want := slices.Sorted(slices.Values(members))
	deadline := time.Now().Add(within)
	for {
		a, pos, err := g.read(ctx)
		if err == nil && slices.Equal(a.Members, want) && len(a.Owners) == g.parts {
			ok := true
			for p := range g.parts {
				ok = ok && a.Owners[p] != "" && pos[p].Owner == a.Owners[p]
			}
			if ok {
				return a, nil
			}
		}
		if time.Now().After(deadline) {
			return a, fmt.Errorf("group %s did not settle on %v in %s (assignment %v, err %v)", g.group, want, within, a.Members, err)
		}
		if err := jsapi.Sleep(ctx, 25*time.Millisecond); err != nil {
			return a, err
		}
	}
}

// feed publishes events under prefix at rate per second over all topics
// until ctx ends, so every partition has events to apply.
func (r *Runner) feed(ctx context.Context, prefix string, rate int) {
	js, err := jetstream.New(r.t.Conn, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return
	}
	t := time.NewTicker(time.Second / time.Duration(max(1, rate/r.o.Topics)))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for tp := range r.o.Topics {
			_, _ = js.PublishAsync(r.topic(prefix, tp), []byte(strconv.Itoa(i)))
		}
	}
}

// KillAndJoin runs Members member processes, then Rounds times kills
// one with SIGKILL and measures how long until every partition it owned
// is consumed again (taken by another member and its position moved past
// where it stood at the kill), then starts a replacement and waits for
// the group to settle. Last, a member more joins, and the partitions that
// change owner are counted (target ceil(P/(Members+1))+1).
func (r *Runner) KillAndJoin(ctx context.Context) (kill, join bench.Result, err error) {
	kill = bench.Result{Name: fmt.Sprintf("consume/kill-1-of-%d", r.o.Members)}
	join = bench.Result{Name: fmt.Sprintf("consume/join-%dth", r.o.Members+1)}
	const group = "benchkill"
	store, err := txn.NewStore(r.t.Conn)
	if err != nil {
		return kill, join, err
	}
	g := groupKeys{store: store, group: group, parts: consume.DefaultPartitions}
	fctx, stopFeed := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.feed(fctx, killPrefix, 2000) })
	defer func() { stopFeed(); wg.Wait() }()

	// The platform's detector, as platform run has it (a standby where
	// the target already runs one): members heartbeat to it and the
	// group's leader drops the members it declares dead.
	deaths, stopDetector, err := r.detector(ctx, group)
	if err != nil {
		return kill, join, err
	}
	defer stopDetector()

	procs := map[string]*proc{}
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	next := 0
	spawn := func() error {
		id := fmt.Sprintf("k%d", next)
		next++
		p, err := r.startProc(group, id)
		if err != nil {
			return err
		}
		procs[id] = p
		return nil
	}
	live := func() []string {
		var ids []string
		for id := range procs {
			ids = append(ids, id)
		}
		return ids
	}
	for range r.o.Members {
		if err := spawn(); err != nil {
			return kill, join, err
		}
	}
	settle := 30*time.Second + 3*r.o.TTL
	if _, err := g.settled(ctx, live(), settle); err != nil {
		return kill, join, err
	}
	prog := bench.NewProgress(r.o.Progress, kill.Name, int64(r.o.Rounds))
	lat, detected := &bench.Latencies{}, &bench.Latencies{}
	for round := range r.o.Rounds {
		a, pos, err := g.read(ctx)
		if err != nil {
			prog.Stop()
			return kill, join, err
		}
		victim := live()[round%len(procs)]
		var parts []int
		at := map[int]uint64{}
		for p, o := range a.Owners {
			if o == victim {
				parts = append(parts, p)
				at[p] = pos[p].Seq
			}
		}
		t0 := time.Now()
		_ = procs[victim].cmd.Process.Kill()
		<-procs[victim].exited
		delete(procs, victim)
		for len(parts) > 0 {
			if err := jsapi.Sleep(ctx, 10*time.Millisecond); err != nil {
				prog.Stop()
				return kill, join, err
			}
			_, pos, err := g.read(ctx)
			if err != nil {
				continue
			}
			parts = slices.DeleteFunc(parts, func(p int) bool {
				return pos[p].Owner != victim && pos[p].Owner != "" && pos[p].Seq > at[p]
			})
			if time.Since(t0) > settle {
				prog.Stop()
				return kill, join, fmt.Errorf("round %d: partitions %v not consumed again in %s", round, parts, settle)
			}
		}
		lat.Add(time.Since(t0))
		// When the detector declared it dead (it may come after the
		// partitions moved: the membership TTL is the backstop).
		for {
			if at, ok := deaths.of(victim); ok && at.After(t0) {
				detected.Add(at.Sub(t0))
				break
			}
			if time.Since(t0) > settle {
				prog.Stop()
				return kill, join, fmt.Errorf("round %d: the detector did not declare %s dead in %s", round, victim, settle)
			}
			if err := jsapi.Sleep(ctx, 10*time.Millisecond); err != nil {
				prog.Stop()
				return kill, join, err
			}
		}
		prog.Add(1)
		if err := spawn(); err != nil {
			prog.Stop()
			return kill, join, err
		}
		if _, err := g.settled(ctx, live(), settle); err != nil {
			prog.Stop()
			return kill, join, err
		}
	}
	prog.Stop()
	kill.Finish(int64(r.o.Rounds), 0, lat)
	// Target: consumed again within the detector's detection time + 1 s,
	// at P50 and at P99.
	d50, d99 := detected.Percentile(50)/1e3, detected.Percentile(99)/1e3
	kill.Extra = map[string]float64{
		"ttl_s": r.o.TTL.Seconds(), "detected_p50_s": d50, "detected_p99_s": d99,
		"target_p50_s": d50 + 1, "target_p99_s": d99 + 1,
	}

	// A member more joins: count the partitions that change owner, over
	// every assignment written until the group settles.
	before, _, err := g.read(ctx)
	if err != nil {
		return kill, join, err
	}
	if err := spawn(); err != nil {
		return kill, join, err
	}
	t0 := time.Now()
	movedTotal := 0
	prev := before.Owners
	deadline := time.Now().Add(settle)
	for {
		a, pos, err := g.read(ctx)
		if err == nil {
			if !slices.Equal(a.Owners, prev) {
				movedTotal += consume.Moved(prev, a.Owners)
				prev = a.Owners
			}
			done := len(a.Members) == len(procs)
			for p := range a.Owners {
				done = done && pos[p].Owner == a.Owners[p]
			}
			if done {
				break
			}
		}
		if time.Now().After(deadline) {
			return kill, join, fmt.Errorf("join: the group did not settle in %s", settle)
		}
		if err := jsapi.Sleep(ctx, 10*time.Millisecond); err != nil {
			return kill, join, err
		}
	}
	join.Finish(1, time.Since(t0), nil)
	n := len(procs)
	join.Extra = map[string]float64{
		"moved": float64(movedTotal), "moved_net": float64(consume.Moved(before.Owners, prev)),
		"target": math.Ceil(float64(consume.DefaultPartitions)/float64(n)) + 1, "partitions": consume.DefaultPartitions,
	}
	return kill, join, nil
}

// deathLog records when the detector declared each member of a group
// dead, by member name (the instance is <member>_<run>).
type deathLog struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (d *deathLog) of(member string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.at[member]
	return at, ok
}

// detector runs the platform's detector in this process and records the
// deaths it declares among group's members.
func (r *Runner) detector(ctx context.Context, group string) (*deathLog, func(), error) {
	d := &deathLog{at: map[string]time.Time{}}
	sub, err := r.t.Conn.Subscribe(streams.DetectorSubject("dead", consume.HeartbeatService(group), "*"), func(m *nats.Msg) {
		inst := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if i := strings.LastIndexByte(inst, '_'); i > 0 {
			d.mu.Lock()
			d.at[inst[:i]] = time.Now()
			d.mu.Unlock()
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("watch the detector: %w", err)
	}
	nc, err := r.t.Connect()
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, err
	}
	det, err := detector.New(detector.Options{Conn: nc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		nc.Close()
		_ = sub.Unsubscribe()
		return nil, nil, err
	}
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = det.Run(dctx) }()
	stop := func() { cancel(); <-done; nc.Close(); _ = sub.Unsubscribe() }
	select {
	case <-det.Ready():
	case <-done:
		stop()
		return nil, nil, errors.New("the detector stopped at start")
	case <-time.After(30 * time.Second):
		stop()
		return nil, nil, errors.New("the detector did not start in 30s")
	}
	return d, stop, nil
}
