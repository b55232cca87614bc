package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/streams"
)

// faultsEnv set to "full" runs the fault tests at the scale
// (make chaos): 200,000 events, 10 failover rounds. Unset, they run
// scaled down, so make test stays fast.
const faultsEnv = "CONSUME_FAULTS"

// faultScale is the fault tests' size: events published, the time they
// are spread over, and failover rounds.
type faultScale struct {
	events int
	// atLeastOnce is the events of the at-least-once run, whose handler
	// commits a transaction per event and is several times slower.
	atLeastOnce int
	spread      time.Duration
	rounds      int
	// ttlRounds is the failover rounds without a detector: each waits
	// out the membership TTL.
	ttlRounds int
	timeout   time.Duration // the whole run, faults and catching up
}

func scale() faultScale {
	if os.Getenv(faultsEnv) == "full" {
		return faultScale{events: 200_000, atLeastOnce: 50_000, spread: 100 * time.Second, rounds: 10, ttlRounds: 10, timeout: 20 * time.Minute}
	}
	return faultScale{events: 10_000, atLeastOnce: 3_000, spread: 8 * time.Second, rounds: 2, ttlRounds: 1, timeout: 4 * time.Minute}
}

// faultTopics are the topics of the fault runs: 64 keys over 16
// partitions.
func faultTopics() []string {
	topics := make([]string, 64)
	for i := range topics {
		topics[i] = fmt.Sprintf("f%d", i)
	}
	return topics
}

// feed publishes n events spread evenly over d: event i goes to topic
// i%len(topics) with the value i/len(topics). Each carries a message id
// and is published again with it until stored, so a leader change
// neither loses nor duplicates an event. It reports how many it
// published.
func feed(ctx context.Context, nc *nats.Conn, topics []string, n int, d time.Duration, published *atomic.Int64, logf func(string, ...any)) error {
	// An acknowledgement lost in a leader change fails its future after
	// the timeout instead of leaving it pending.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return err
	}
	msgID := func(i int) jetstream.PublishOpt { return jetstream.WithMsgID("fault-" + strconv.Itoa(i)) }
	subject := func(i int) string { return streams.EventsPrefix + topics[i%len(topics)] }
	data := func(i int) []byte { return []byte(strconv.Itoa(i / len(topics))) }
	again := func(i int) error {
		for attempt := 1; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := js.Publish(pctx, subject(i), data(i), msgID(i))
			cancel()
			if err == nil || ctx.Err() != nil {
				return ctx.Err()
			}
			if attempt%10 == 1 {
				logf("publish event %d, attempt %d: %v", i, attempt, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	start := time.Now()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for sent := 0; sent < n; {
		due := min(n, int(float64(n)*float64(time.Since(start))/float64(d))+1)
		type pending struct {
			i int
			f jetstream.PubAckFuture
		}
		var futs []pending
		due = min(due, sent+1000) // report progress as it goes
		for ; sent < due; sent++ {
			f, err := js.PublishAsync(subject(sent), data(sent), msgID(sent))
			if err != nil {
				if err := again(sent); err != nil {
					return err
				}
				continue
			}
			futs = append(futs, pending{sent, f})
		}
		for _, p := range futs {
			select {
			case <-p.f.Ok():
				continue
			case <-p.f.Err():
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := again(p.i); err != nil {
				return err
			}
		}
		published.Store(int64(sent))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// faultRun is what runUnderFaults saw.
type faultRun struct {
	perTopic  int
	applied   int // events counted by the counters, duplicates included
	kills     int
	pauses    []time.Duration
	stepDowns int
	fenced    int // commits refused, from every member's logs
	took      time.Duration
}

// runUnderFaults has 4 member processes of group apply the fault
// workload while member k is killed with SIGKILL every 5s and started
// again (under a new name), member s is paused with SIGSTOP until its
// partitions have moved to others and then resumed with SIGCONT (again
// every 15s), and the KV_STATE and EVENTS leaders step down in turn every
// 5s. It returns once every topic's counter has counted all its events
// and every member has stopped.
func runUnderFaults(t *testing.T, e *groupEnv, group, mode string, sc faultScale) faultRun {
	topics := faultTopics()
	per := sc.events / len(topics)
	run := faultRun{perTopic: per}
	ttl := 2 * time.Second // the member processes'
	spec := func(id string) memberSpec {
		return memberSpec{Group: group, ID: id, Mode: mode, MaxBatch: DefaultMaxBatch, Log: true}
	}
	procs := map[string]*proc{}
	var all []*proc
	start := func(id string) *proc {
		p := e.spawn(t, spec(id))
		procs[id] = p
		all = append(all, p)
		return p
	}
	for _, id := range []string{"a", "b", "s", "k0"} {
		start(id)
	}
	s, k := procs["s"], procs["k0"]

	ctx, cancel := context.WithTimeout(context.Background(), sc.timeout)
	defer cancel()
	var published atomic.Int64
	fed := make(chan error, 1)
	begin := time.Now()
	go func() { fed <- feed(ctx, e.nc, topics, per*len(topics), sc.spread, &published, t.Logf) }()
	fedDone := false
	dump := func() string {
		var b strings.Builder
		for _, p := range all[max(0, len(all)-6):] {
			fmt.Fprintf(&b, "--- member %s:\n%s\n", p.id, tail(p.logs.String(), 15))
		}
		return b.String()
	}

	stepped := []string{streams.KVStream(streams.BucketState), streams.Events}
	nextKill, nextStep, nextPause := begin.Add(5*time.Second), begin.Add(2500*time.Millisecond), begin.Add(4*time.Second)
	var pausedAt time.Time
	nextReport := begin.Add(5 * time.Second)
	for {
		now := time.Now()
		if ctx.Err() != nil {
			t.Fatalf("not done within %s: %d of %d events published, %d applied; members' last logs:\n%s",
				sc.timeout, published.Load(), per*len(topics), run.applied, dump())
		}
		if !fedDone {
			select {
			case err := <-fed:
				require.NoError(t, err, "publish the events")
				fedDone = true
			default:
			}
		}
		caughtUp := false
		if counters, err := e.readCounters(ctx, topics); err == nil { // a leader may be moving
			run.applied, caughtUp = 0, true
			for _, c := range counters {
				run.applied += c.N
				caughtUp = caughtUp && c.N >= per
			}
		}
		if now.After(nextReport) {
			t.Logf("after %s: %d published, %d applied", now.Sub(begin).Round(time.Second), published.Load(), run.applied)
			nextReport = now.Add(5 * time.Second)
		}
		// Faults go on while events are published, and until each kind
		// happened once.
		faulting := !fedDone || run.kills == 0 || len(run.pauses) == 0 || run.stepDowns < 2
		finished := !faulting && caughtUp
		switch {
		case !pausedAt.IsZero():
			if now.Sub(pausedAt) > ttl && e.movedFrom(ctx, group, s.id) {
				s.signal(t, syscall.SIGCONT)
				run.pauses = append(run.pauses, now.Sub(pausedAt))
				pausedAt, nextPause = time.Time{}, now.Add(15*time.Second)
			}
		case faulting && now.After(nextPause):
			s.signal(t, syscall.SIGSTOP)
			pausedAt = now
		}
		if faulting && now.After(nextKill) {
			k.kill(t)
			run.kills++
			k = start("k" + strconv.Itoa(run.kills))
			nextKill = now.Add(5 * time.Second)
		}
		if faulting && now.After(nextStep) {
			clustertest.StepDown(t, e.c, e.nc, stepped[run.stepDowns%2])
			run.stepDowns++
			nextStep = now.Add(5 * time.Second)
		}
		if finished && pausedAt.IsZero() {
			break
		}
		time.Sleep(200 * time.Millisecond) // the loop's pace, not a condition
	}
	run.took = time.Since(begin)
	for _, p := range []*proc{procs["a"], procs["b"], s, k} {
		p.terminate(t)
	}
	for _, p := range all {
		run.fenced += strings.Count(p.logs.String(), "partition taken by another member")
	}
	counters := e.counters(t, topics)
	run.applied = 0
	for _, c := range counters {
		run.applied += c.N
	}
	return run
}

// movedFrom reports whether the assignment leaves member id out and
// every partition's position key names another owner: a commit id has
// pending is refused. A read that fails (a leader moving) says no.
func (e *groupEnv) movedFrom(ctx context.Context, group, id string) bool {
	a, err := e.assignment(ctx, group)
	if err != nil || len(a.Owners) == 0 || slices.Contains(a.Members, id) || slices.Contains(a.Owners, id) {
		return false
	}
	pos, err := e.positions(ctx, group, len(a.Owners))
	if err != nil {
		return false
	}
	for _, p := range pos {
		if p.Owner == id {
			return false
		}
	}
	return true
}

// assignment reads group's assign key (none: the zero assignment).
func (e *groupEnv) assignment(ctx context.Context, group string) (assignment, error) {
	key := groupKey(group, "assign")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	en, err := e.store.Get(ctx, key)
	if err != nil || !en.Found {
		return assignment{}, err
	}
	return decode[assignment](key, en.Value)
}

// positions reads group's n position keys.
func (e *groupEnv) positions(ctx context.Context, group string, n int) ([]position, error) {
	keys := make([]string, n)
	for p := range keys {
		keys[p] = posKey(group, p)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := e.store.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]position, n)
	for p, k := range keys {
		if en := got[k]; en.Found {
			if out[p], err = decode[position](k, en.Value); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// readCounters reads the counters of topics, or fails (a leader moving).
func (e *groupEnv) readCounters(ctx context.Context, topics []string) (map[string]counter, error) {
	keys := make([]string, len(topics))
	for i, tp := range topics {
		keys[i] = "c." + tp
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := e.store.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := map[string]counter{}
	for i, tp := range topics {
		var c counter
		if en := got[keys[i]]; en.Found {
			if err := json.Unmarshal(en.Value, &c); err != nil {
				return nil, err
			}
		}
		out[tp] = c
	}
	return out, nil
}

func (r faultRun) String() string {
	return fmt.Sprintf("%d events (%d topics) applied as %d counter increments in %s (%.0f events/s) under %d SIGKILLs, %d SIGSTOPs (paused %v), %d leader step-downs; %d commits refused by fencing",
		r.perTopic*64, 64, r.applied, r.took.Round(100*time.Millisecond), float64(r.perTopic*64)/r.took.Seconds(),
		r.kills, len(r.pauses), roundAll(r.pauses), r.stepDowns, r.fenced)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}

// TestGroupExactlyOnceUnderFaults: 4 member processes apply events as
// counter increments (10,000 over 8s; 200,000 with CONSUME_FAULTS=full)
// while one is killed with SIGKILL every 5s and started again, another
// is paused with SIGSTOP past its membership's TTL and resumed, and the
// KV_STATE and EVENTS leaders step down. Every counter ends exact:
// nothing applied twice, nothing missing, every topic in stream order.
func TestGroupExactlyOnceUnderFaults(t *testing.T) {
	e := newGroupEnv(t)
	run := runUnderFaults(t, e, "eos", "", scale())
	t.Logf("exactly once: %s", run)
	want := counter{N: run.perTopic, Sum: run.perTopic * (run.perTopic - 1) / 2}
	e.checkExact(t, faultTopics(), want, "")
	if d := run.applied - run.perTopic*64; d != 0 {
		t.Errorf("%d events applied more than published (negative: missing)", d)
	}
}

// TestGroupAtLeastOnceUnderFaults runs the same workload with a handler
// that commits its counter apart from the position (modeAtLeastOnce)
// and counts the duplicates the faults cause: events applied again by
// the next owner after a kill, or by a paused member before its position
// commit is refused. Nothing is missing.
func TestGroupAtLeastOnceUnderFaults(t *testing.T) {
	e := newGroupEnv(t)
	sc := scale()
	sc.events = sc.atLeastOnce
	run := runUnderFaults(t, e, "alo", modeAtLeastOnce, sc)
	dups, outOfOrder := 0, 0
	for tp, got := range e.counters(t, faultTopics()) {
		if got.N < run.perTopic {
			t.Errorf("topic %s: %d events applied, want at least %d", tp, got.N, run.perTopic)
		}
		dups += got.N - run.perTopic
		outOfOrder += got.Bad
	}
	t.Logf("at least once: %s; %d duplicates (%.2f%% of events), %d applied behind a later one", run, dups,
		100*float64(dups)/float64(run.perTopic*64), outOfOrder)
	if dups == 0 {
		t.Errorf("no duplicates under %d SIGKILLs and %d SIGSTOPs: the at-least-once handler is not what this test means", run.kills, len(run.pauses))
	}
}

// TestGroupFencesPausedProcess pauses a member process with SIGSTOP
// inside a transaction (its handler has read the position and waits)
// until another member process has taken the partition and applied the
// event; resumed with SIGCONT, the paused member's commit is refused
// (ErrFenced, in its log and its report) and the event stays applied
// once.
func TestGroupFencesPausedProcess(t *testing.T) {
	e := newGroupEnv(t)
	const group = "fencep"
	e.publishPlain(t, []string{"x"}, 1, 2)
	p := e.spawn(t, memberSpec{Group: group, ID: "p", Mode: modeGate, Log: true})
	clustertest.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(p.out.String(), gateReached) {
			return errors.New("member p's handler has not started")
		}
		return nil
	})
	p.signal(t, syscall.SIGSTOP)
	paused := time.Now()

	b := e.spawn(t, memberSpec{Group: group, ID: "b", Log: true})
	clustertest.Eventually(t, 60*time.Second, func() error {
		if got := e.counters(t, []string{"x"})["x"]; got.N != 1 {
			return fmt.Errorf("counter x at %d events, want 1", got.N)
		}
		return nil
	})
	part := Partition("x", DefaultPartitions)
	all, err := e.positions(t.Context(), group, DefaultPartitions)
	require.NoError(t, err)
	pos := all[part]
	if pos.Owner != "b" || pos.Epoch < 2 {
		t.Fatalf("partition %d's position %+v, want taken by b at epoch 2 or more", part, pos)
	}
	p.signal(t, syscall.SIGCONT)
	_, err = p.stdin.Write([]byte("go\n"))
	require.NoError(t, err)
	t.Logf("member p paused for %s; partition %d taken by b at epoch %d", time.Since(paused).Round(100*time.Millisecond), part, pos.Epoch)
	clustertest.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(p.logs.String(), "partition taken by another member") {
			return errors.New("member p's commit was not refused yet")
		}
		return nil
	})
	if got := e.counters(t, []string{"x"})["x"]; got.N != 1 || got.Sum != 1 {
		t.Errorf("after the paused member resumed: counter x %+v, want 1 event summing 1", got)
	}
	// The group goes on, p included.
	e.publishPlain(t, []string{"x"}, 2, 3)
	clustertest.Eventually(t, 30*time.Second, func() error {
		if got := e.counters(t, []string{"x"})["x"]; got.N != 2 {
			return fmt.Errorf("counter x %+v, want 2 events", got)
		}
		return nil
	})
	rp, rb := p.terminate(t), b.terminate(t)
	t.Logf("member p: %+v, member b: %+v", rp, rb)
	if got := e.counters(t, []string{"x"})["x"]; got.N != 2 || got.Sum != 3 || got.Bad != 0 {
		t.Errorf("counter x %+v, want 2 events summing 3 in order", got)
	}
	if rp.Fenced == 0 {
		t.Errorf("member p reports no fenced commit")
	}
	if rp.Applied+rb.Applied != 2 {
		t.Errorf("members applied %d and %d events, want 2 in all", rp.Applied, rb.Applied)
	}
}

// TestGroupFailoverTime kills one of 3 member processes (default TTL,
// tick and heartbeat) with SIGKILL, round after round, and measures from
// the kill to the assignment without it and to the first event of its
// partitions applied by another member (published right after the
// kill). Each round's event is applied exactly once; the times are
// logged per round, then as P50 and max. Two variants share one cluster:
//
//   - ttl: no detector runs, so the member key's TTL alone decides, as
//     where a deployment has none. The TTL is the documented backstop:
//     every round must reassign within failoverBound, and apply the
//     event within two reader heartbeats more. 1 round by default, 10
//     with CONSUME_FAULTS=full.
//   - detector: the platform's detector runs, as platform run has it;
//     members heartbeat to it and the group's leader drops a member it
//     declares dead. At least half the rounds must beat the TTL. 2
//     rounds by default, 10 with CONSUME_FAULTS=full.
func TestGroupFailoverTime(t *testing.T) {
	e := newGroupEnv(t)
	sc := scale()
	t.Run("ttl", func(t *testing.T) {
		rounds := sc.ttlRounds
		got := e.failoverRounds(t, "ttl", rounds, nil)
		t.Logf("kill -9 of 1 of 3 members, no detector (TTL %s, tick %s), %d rounds: reassigned P50 %s max %s; next event applied P50 %s max %s",
			DefaultTTL, DefaultTick, rounds, p50(got.reassigned), slices.Max(got.reassigned).Round(time.Millisecond),
			p50(got.applied), slices.Max(got.applied).Round(time.Millisecond))
		for r := range got.reassigned {
			if d := got.reassigned[r]; d > failoverBound {
				t.Errorf("round %d: reassigned after %s, past the membership TTL's bound %s (TTL + 2 ticks + 1 s)", r, d.Round(time.Millisecond), failoverBound)
			}
			if d := got.applied[r]; d > failoverBound+2*readerHeartbeat {
				t.Errorf("round %d: the event applied after %s, past %s (the reassignment's bound + two reader heartbeats, what a lost first pull costs)",
					r, d.Round(time.Millisecond), failoverBound+2*readerHeartbeat)
			}
		}
	})
	t.Run("detector", func(t *testing.T) {
		const group = "live"
		deaths := e.runDetector(t, group)
		got := e.failoverRounds(t, group, sc.rounds, deaths)
		t.Logf("kill -9 of 1 of 3 members (TTL %s, tick %s, heartbeat %s), %d rounds: declared dead P50 %s max %s; reassigned P50 %s max %s; next event applied P50 %s max %s",
			DefaultTTL, DefaultTick, DefaultHeartbeat, sc.rounds, p50(got.detected), slices.Max(got.detected).Round(time.Millisecond),
			p50(got.reassigned), slices.Max(got.reassigned).Round(time.Millisecond),
			p50(got.applied), slices.Max(got.applied).Round(time.Millisecond))
		// The detector, not the membership's TTL, moves the partitions:
		// at least half the rounds beat the TTL (a busy test machine may
		// delay a round's detection past it).
		if p := p50(got.reassigned); p >= DefaultTTL {
			t.Errorf("reassigned P50 %s, not before the membership TTL %s: the detector's verdict was not used", p, DefaultTTL)
		}
	})
}

// failoverBound is how long a killed member's partitions may wait for
// their reassignment where the TTL alone decides: the member key,
// renewed at most TTL/4 before the kill, is stale TTL after its last
// renewal; the leader sees it at its next tick (a tick more if the
// leader was the victim: its lease lives four ticks, less than the TTL);
// a second is left for the writes and the watch on a busy host.
const failoverBound = DefaultTTL + 2*DefaultTick + time.Second

// failoverTimes are the rounds' times from the kill.
type failoverTimes struct {
	detected, reassigned, applied []time.Duration
}

// failoverRounds runs 3 member processes of group and, rounds times,
// kills one with SIGKILL, publishes an event to one of its partitions,
// and waits for the assignment without it and the event applied (and,
// with deaths, the detector's verdict); then it starts a replacement.
// A round slower than failoverBound logs the members' last lines.
func (e *groupEnv) failoverRounds(t *testing.T, group string, rounds int, deaths *deathLog) failoverTimes {
	t.Helper()
	// Topics of the group's own, so that the counters of another group
	// on the same cluster (each group applies every event) do not move.
	topics := make([]string, 64)
	for i := range topics {
		topics[i] = group + "-" + strconv.Itoa(i)
	}
	spec := func(id string) memberSpec {
		return memberSpec{Group: group, ID: id, TTL: DefaultTTL, Tick: DefaultTick, Log: true, Debug: true}
	}
	var procs, all []*proc
	for i := range 3 {
		procs = append(procs, e.spawn(t, spec("m"+strconv.Itoa(i))))
	}
	all = append(all, procs...)
	leases, err := e.js.KeyValue(clustertest.Context(t, 10*time.Second), streams.BucketLeases)
	require.NoError(t, err)
	var got failoverTimes
	for r := range rounds {
		ids := make([]string, len(procs))
		for i, p := range procs {
			ids[i] = p.id
		}
		slices.Sort(ids)
		// Settled: the assignment lists the live members and each owner
		// has taken its partitions.
		var a assignment
		clustertest.Eventually(t, 60*time.Second, func() error {
			var err error
			if a, err = e.assignment(t.Context(), group); err != nil || !slices.Equal(a.Members, ids) {
				return fmt.Errorf("assignment %+v (%v), want members %v", a, err, ids)
			}
			pos, err := e.positions(t.Context(), group, len(a.Owners))
			if err != nil {
				return err
			}
			for p, pos := range pos {
				if pos.Owner != a.Owners[p] {
					return fmt.Errorf("partition %d assigned to %s, held by %s", p, a.Owners[p], pos.Owner)
				}
			}
			return nil
		})
		victim := procs[r%len(procs)]
		topic := ""
		for _, tp := range topics {
			if a.Owners[Partition(tp, DefaultPartitions)] == victim.id {
				topic = tp
				break
			}
		}
		require.NotEmpty(t, topic, "member %s owns no partition of the topics", victim.id)
		led := false
		if en, err := leases.Get(clustertest.Context(t, 5*time.Second), leaseKey(group)); err == nil {
			led = strings.Contains(string(en.Value()), `"`+victim.id+`"`)
		}
		before := e.counters(t, []string{topic})[topic]

		killed := time.Now()
		victim.kill(t)
		_, err := e.js.Publish(clustertest.Context(t, 10*time.Second), streams.EventsPrefix+topic, []byte("1"))
		require.NoError(t, err)
		var tAssign, tApplied, tDetected time.Duration
		clustertest.Eventually(t, 60*time.Second, func() error {
			if tDetected == 0 && deaths != nil {
				if at, ok := deaths.of(victim.id); ok && at.After(killed) {
					tDetected = at.Sub(killed)
				}
			}
			if tAssign == 0 {
				if a, err := e.assignment(t.Context(), group); err == nil && len(a.Owners) > 0 && !slices.Contains(a.Owners, victim.id) {
					tAssign = time.Since(killed)
				}
			}
			if tApplied == 0 {
				if got := e.counters(t, []string{topic})[topic]; got.N > before.N {
					tApplied = time.Since(killed)
				}
			}
			if tAssign == 0 || tApplied == 0 || (deaths != nil && tDetected == 0) {
				return fmt.Errorf("%s's partitions: declared dead after %s, reassigned after %s, event applied after %s", victim.id, tDetected, tAssign, tApplied)
			}
			return nil
		})
		if got := e.counters(t, []string{topic})[topic]; got.N != before.N+1 || got.Sum != before.Sum+1 {
			t.Errorf("round %d: counter %s went from %+v to %+v, want one more event of value 1", r, topic, before, got)
		}
		verdict := "no detector"
		if deaths != nil {
			verdict = "declared dead after " + tDetected.Round(time.Millisecond).String()
		}
		t.Logf("round %d: killed %s (leader: %v) at %s: %s, reassigned after %s, its partitions' next event applied after %s",
			r, victim.id, led, killed.Format("15:04:05.000"), verdict, tAssign.Round(time.Millisecond), tApplied.Round(time.Millisecond))
		if tAssign > failoverBound || tApplied > failoverBound {
			var b strings.Builder
			for _, p := range all {
				fmt.Fprintf(&b, "--- member %s:\n%s\n", p.id, tail(p.logs.String(), 40))
			}
			t.Logf("round %d was slow; the members' last logs:\n%s", r, b.String())
		}
		got.reassigned, got.applied = append(got.reassigned, tAssign), append(got.applied, tApplied)
		if deaths != nil {
			got.detected = append(got.detected, tDetected)
		}
		procs[r%len(procs)] = e.spawn(t, spec("m"+strconv.Itoa(len(procs)+r)))
		all = append(all, procs[r%len(procs)])
	}
	return got
}

// deathLog records when the detector declared each instance of a
// group's members dead (detector.dead.consume-<group>.*).
type deathLog struct {
	mu sync.Mutex
	at map[string]time.Time // instance -> when its death was seen
}

// of returns when the latest run of member was declared dead.
func (d *deathLog) of(member string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var last time.Time
	for inst, at := range d.at {
		if strings.HasPrefix(inst, member+"_") && at.After(last) {
			last = at
		}
	}
	return last, !last.IsZero()
}

// runDetector runs the platform's detector for the test and logs the
// deaths it declares among group's members.
func (e *groupEnv) runDetector(t *testing.T, group string) *deathLog {
	t.Helper()
	d := &deathLog{at: map[string]time.Time{}}
	sub, err := e.nc.Subscribe(streams.DetectorSubject("dead", HeartbeatService(group), "*"), func(m *nats.Msg) {
		inst := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		d.mu.Lock()
		d.at[inst] = time.Now()
		d.mu.Unlock()
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	det, err := detector.New(detector.Options{Conn: clustertest.Connect(t, e.c), Logger: clustertest.Logger()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = det.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-det.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("the detector did not start")
	}
	return d
}

// p50 is the median of ds.
func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2].Round(time.Millisecond)
}
