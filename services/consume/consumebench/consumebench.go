// Package consumebench measures consumer groups (services/consume) on a
// live cluster, side by side with the single ordered replicator.Reader and
// a stock JetStream durable pull consumer, for `platform bench consume`.
// It lives apart from the library so that importers of consume link no
// benchmark code.
package consumebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// Options size the benchmarks.
type Options struct {
	// Events is how many events the throughput rows read (default
	// 1,000,000): in envelopes for the group and the Reader, one message
	// each for the stock consumer.
	Events int
	// EOSEvents is how many events the exactly-once counter row applies
	// (default 200,000).
	EOSEvents int
	// Members is the group size (default 4).
	Members int
	// Topics is how many topics the events spread over (default 64).
	Topics int
	// Rounds is how many members the kill row kills, one per round
	// (default 10).
	Rounds int
	// TTL is the members' TTL in the kill and join rows (default
	// consume.DefaultTTL): the time a killed member is detected in.
	TTL time.Duration
	// Member returns the command that runs one member process (see
	// RunMember); nil skips the kill and join rows.
	Member func(spec MemberSpec) *exec.Cmd
	// Rows names the rows to run (the suffix after consume/, such as
	// group-4-ack or reader-ordered); empty runs every row. The ratios
	// are added when the group row and both baselines ran.
	Rows []string
	// Progress receives progress bars (nil: none).
	Progress io.Writer
	// Logger receives the members' logs (default: discarded).
	Logger *slog.Logger
	// Published, when set, is called once the throughput rows' events
	// are stored, before the first row reads them (a profile started
	// there leaves the publishing out).
	Published func()
}

func (o *Options) setDefaults() {
	if o.Events == 0 {
		o.Events = 1_000_000
	}
	if o.EOSEvents == 0 {
		o.EOSEvents = 200_000
	}
	if o.Members == 0 {
		o.Members = 4
	}
	if o.Topics == 0 {
		o.Topics = 64
	}
	if o.Rounds == 0 {
		o.Rounds = 10
	}
	if o.TTL == 0 {
		o.TTL = consume.DefaultTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Runner runs the benchmarks against one target.
type Runner struct {
	t *target.Target
	o Options
}

// New returns a runner on t.
func New(t *target.Target, o Options) *Runner {
	o.setDefaults()
	return &Runner{t: t, o: o}
}

// Subject prefixes of each row's events, so rows do not read each
// other's.
const (
	envPrefix  = streams.EventsPrefix + "bench.env."
	rawPrefix  = streams.EventsPrefix + "bench.raw."
	eosPrefix  = streams.EventsPrefix + "bench.eos."
	killPrefix = streams.EventsPrefix + "bench.kill."
)

// All runs every row (or those in Options.Rows) side by side and adds
// the ratios the targets are stated in to the group rows.
func (r *Runner) All(ctx context.Context) ([]bench.Result, error) {
	var out []bench.Result
	groupAck, groupEOS := fmt.Sprintf("group-%d-ack", r.o.Members), fmt.Sprintf("group-%d-eos", r.o.Members)
	fanout, fanoutDecode := r.fanoutRow(false), r.fanoutRow(true)
	if r.want(groupAck, groupEOS, fanout, fanoutDecode, "reader-ordered") {
		if err := r.publishEnvelopes(ctx, envPrefix, r.o.Events); err != nil {
			return out, err
		}
	}
	if r.want("stock-pull-ack") {
		if err := r.publishPlain(ctx, rawPrefix, r.o.Events); err != nil {
			return out, err
		}
	}
	if r.o.Published != nil {
		r.o.Published()
	}
	var groups, floors []int
	var reader, stock bench.Result
	for _, row := range []struct {
		name   string
		run    func(context.Context) (bench.Result, error)
		group  bool
		result *bench.Result
	}{
		{groupAck, r.GroupAck, true, nil},
		{groupEOS, r.GroupNoop, true, nil},
		{fanout, func(ctx context.Context) (bench.Result, error) { return r.Fanout(ctx, false) }, false, nil},
		{fanoutDecode, func(ctx context.Context) (bench.Result, error) { return r.Fanout(ctx, true) }, false, nil},
		{"reader-ordered", r.Reader, false, &reader},
		{"stock-pull-ack", r.Stock, false, &stock},
	} {
		if !r.want(row.name) {
			continue
		}
		res, err := row.run(ctx)
		out = append(out, res)
		if err != nil {
			return out, err
		}
		if row.group {
			groups = append(groups, len(out)-1)
		}
		if row.name == fanout || row.name == fanoutDecode {
			floors = append(floors, len(out)-1)
		}
		if row.result != nil {
			*row.result = res
		}
	}
	if reader.EventsPerSec > 0 {
		for _, i := range append(groups, floors...) {
			out[i].Extra["x_reader"] = out[i].EventsPerSec / reader.EventsPerSec
		}
	}
	if reader.EventsPerSec > 0 && stock.EventsPerSec > 0 {
		for _, i := range groups {
			out[i].Extra["x_stock"] = out[i].EventsPerSec / stock.EventsPerSec
		}
	}
	if r.want(fmt.Sprintf("eos-counters-%d", r.o.Members)) {
		eos, err := r.ExactlyOnce(ctx)
		out = append(out, eos)
		if err != nil {
			return out, err
		}
	}
	if r.o.Member == nil || !r.want(fmt.Sprintf("kill-1-of-%d", r.o.Members), fmt.Sprintf("join-%dth", r.o.Members+1)) {
		return out, nil
	}
	kill, join, err := r.KillAndJoin(ctx)
	out = append(out, kill, join)
	return out, err
}

// want reports whether any of rows is to run.
func (r *Runner) want(rows ...string) bool {
	if len(r.o.Rows) == 0 {
		return true
	}
	for _, row := range rows {
		if slices.Contains(r.o.Rows, row) {
			return true
		}
	}
	return false
}

// cpu is the process's CPU time: its own and its waited-for children's.
type cpu struct{ self, children time.Duration }

func cpuNow() cpu {
	var s, c syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	return cpu{time.Duration(s.Utime.Nano() + s.Stime.Nano()), time.Duration(c.Utime.Nano() + c.Stime.Nano())}
}

// since returns the CPU seconds used since c.
func (c cpu) since() float64 {
	n := cpuNow()
	return (n.self - c.self + n.children - c.children).Seconds()
}

// finish fills res from events read in elapsed with cpuS CPU seconds.
func finish(res *bench.Result, events int64, elapsed time.Duration, cpuS float64) {
	res.Finish(events, elapsed, nil)
	if res.Extra == nil {
		res.Extra = map[string]float64{}
	}
	res.Extra["cpu_s"] = cpuS
	if events > 0 {
		res.Extra["cpu_s_per_M"] = cpuS / float64(events) * 1e6
	}
}

func (r *Runner) topic(prefix string, i int) string { return prefix + "t" + strconv.Itoa(i%r.o.Topics) }

// publishEnvelopes stores n events under prefix in envelopes, event i on
// topic i mod Topics with payload i/Topics (its index in its topic).
func (r *Runner) publishEnvelopes(ctx context.Context, prefix string, n int) error {
	prog := bench.NewProgress(r.o.Progress, "publish "+strings.TrimSuffix(prefix, "."), int64(n))
	defer prog.Stop()
	p, err := replicator.NewPublisher(r.t.JS, replicator.WithEnvelope())
	if err != nil {
		return err
	}
	for i := range n {
		if _, err := p.PublishAsync(ctx, replicator.Message{Subject: r.topic(prefix, i), Data: []byte(strconv.Itoa(i / r.o.Topics))}); err != nil {
			_ = p.Close(ctx)
			return fmt.Errorf("publish: %w", err)
		}
		prog.Add(1)
	}
	if err := p.Close(ctx); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// publishPlain stores n events under prefix, one message each. Every
// publish is acknowledged within 30 seconds or fails the call, and so
// does a publish the stream refused: an event lost here would leave a row
// waiting for a count it cannot reach.
func (r *Runner) publishPlain(ctx context.Context, prefix string, n int) error {
	prog := bench.NewProgress(r.o.Progress, "publish "+strings.TrimSuffix(prefix, "."), int64(n))
	defer prog.Stop()
	var (
		mu     sync.Mutex
		failed int
		first  error
	)
	js, err := jetstream.New(r.t.Conn, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(30*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			mu.Lock()
			defer mu.Unlock()
			if failed++; first == nil {
				first = err
			}
		}))
	if err != nil {
		return err
	}
	for i := range n {
		if _, err := js.PublishAsync(r.topic(prefix, i), []byte(strconv.Itoa(i/r.o.Topics)), jetstream.WithStallWait(30*time.Second)); err != nil {
			return fmt.Errorf("publish event %d of %d: %w", i, n, err)
		}
		prog.Add(1)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return fmt.Errorf("publish: %d of %d events still awaiting their acknowledgement: %w", js.PublishAsyncPending(), n, ctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if failed > 0 {
		return fmt.Errorf("publish: %d of %d events not stored: %w", failed, n, first)
	}
	return nil
}

// memberStop bounds how long stopping the members of a row may take.
const memberStop = 30 * time.Second

// member is a group member running in this process.
type member struct {
	id   string
	m    *consume.Member
	nc   *nats.Conn
	stop context.CancelFunc
	done chan error
}

// startMembers runs n members of group on connections of their own.
func (r *Runner) startMembers(ctx context.Context, group, filter string, h consume.Handler) ([]*member, error) {
	return r.startMembersWith(ctx, consume.Options{Group: group, Filter: []string{filter}, Handler: h, AtLeastOnce: h == nil})
}

// startMembersWith runs Members members with base's options, each on a
// connection of its own.
func (r *Runner) startMembersWith(ctx context.Context, base consume.Options) ([]*member, error) {
	var out []*member
	for i := range r.o.Members {
		mb, err := r.startMember(ctx, base, fmt.Sprintf("m%d", i))
		if err != nil {
			_ = stopMembers(out, memberStop) // the start's error says more
			return nil, err
		}
		out = append(out, mb)
	}
	return out, nil
}

// stopMembers stops the members and closes their connections, waiting d
// in all: it names the members whose Run had not returned by then, and
// closes their connections too, which ends whatever they waited on.
func stopMembers(ms []*member, d time.Duration) error {
	for _, m := range ms {
		m.stop()
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var stuck []string
	expired := false
	for _, m := range ms {
		if !expired {
			select {
			case <-m.done:
				m.nc.Close()
				continue
			case <-deadline.C:
				expired = true
			}
		}
		select {
		case <-m.done:
		default:
			stuck = append(stuck, m.id)
		}
		m.nc.Close()
	}
	if len(stuck) > 0 {
		return fmt.Errorf("members %v did not stop within %v of being told to", stuck, d)
	}
	return nil
}

// waitApplied waits until the members applied n events in all.
func waitApplied(ctx context.Context, ms []*member, n int64, prog *bench.Progress) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	var last int64
	for {
		var got int64
		for _, m := range ms {
			got += m.m.Applied()
		}
		prog.Add(got - last)
		last = got
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d events applied: %w", got, n, ctx.Err())
		case err := <-firstDone(ms):
			return fmt.Errorf("a member stopped: %v", err)
		case <-t.C:
		}
	}
}

// firstDone returns a channel that yields when any member's Run
// returned early (nil channel when none did).
func firstDone(ms []*member) <-chan error {
	for _, m := range ms {
		select {
		case err := <-m.done:
			ch := make(chan error, 1)
			ch <- err
			m.done <- err // keep it for stopMembers
			return ch
		default:
		}
	}
	return nil
}

// GroupNoop is the throughput row: Members members of a fresh group read
// the envelope events, each partition committing its position (one
// transaction per batch of up to consume.DefaultMaxBatch events) with a
// handler that does nothing else: the group's own cost of exactly-once.
// Timed from the members' start (joining included) to the last event
// applied.
func (r *Runner) GroupNoop(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: fmt.Sprintf("consume/group-%d-eos", r.o.Members)}
	n := int64(r.o.Events)
	prog := bench.NewProgress(r.o.Progress, res.Name, n)
	defer prog.Stop()
	c0, t0 := cpuNow(), time.Now()
	ms, err := r.startMembers(ctx, "benchnoop", envPrefix+">", func(*txn.Tx, replicator.Event) error { return nil })
	if err != nil {
		return res, err
	}
	err = waitApplied(ctx, ms, n, prog)
	el, cs := time.Since(t0), c0.since()
	err = errors.Join(err, stopMembers(ms, memberStop))
	finish(&res, n, el, cs)
	return res, err
}

// Reader is the baseline: one ordered replicator.Reader reads the same
// envelope events.
func (r *Runner) Reader(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: "consume/reader-ordered"}
	n := int64(r.o.Events)
	prog := bench.NewProgress(r.o.Progress, res.Name, n)
	defer prog.Stop()
	nc, js, err := r.connectJS()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	c0, t0 := cpuNow(), time.Now()
	rd, err := replicator.NewReader(ctx, js, replicator.WithFilter(envPrefix+">"))
	if err != nil {
		return res, err
	}
	defer func() { _ = rd.Close() }()
	var got int64
	for got < n {
		if _, err := rd.Next(ctx); err != nil {
			return res, fmt.Errorf("reader: %d of %d events: %w", got, n, err)
		}
		got++
		if got%1024 == 0 {
			prog.Add(1024)
		}
	}
	finish(&res, n, time.Since(t0), c0.since())
	return res, nil
}

// add is the exactly-once handler: it adds the event's value to its
// topic's counter ("<events>:<sum>" under key sum.<topic>).
func add(prefix string) consume.Handler {
	return func(tx *txn.Tx, ev replicator.Event) error {
		key := "benchsum." + strings.TrimPrefix(ev.Subject, prefix)
		e, err := tx.Get(key)
		if err != nil {
			return err
		}
		var cnt, sum int64
		if e.Found {
			c, s, _ := strings.Cut(string(e.Value), ":")
			cnt, _ = strconv.ParseInt(c, 10, 64)
			sum, _ = strconv.ParseInt(s, 10, 64)
		}
		v, err := strconv.ParseInt(string(ev.Data), 10, 64)
		if err != nil {
			return err
		}
		return tx.Put(key, []byte(strconv.FormatInt(cnt+1, 10)+":"+strconv.FormatInt(sum+v, 10)))
	}
}

// ExactlyOnce is the exactly-once row: Members members add each event's
// value to its topic's counter in STATE; afterwards every counter must
// hold exactly its topic's events and sum (extra exact = 1).
func (r *Runner) ExactlyOnce(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: fmt.Sprintf("consume/eos-counters-%d", r.o.Members)}
	n := int64(r.o.EOSEvents)
	if err := r.publishEnvelopes(ctx, eosPrefix, r.o.EOSEvents); err != nil {
		return res, err
	}
	prog := bench.NewProgress(r.o.Progress, res.Name, n)
	defer prog.Stop()
	c0, t0 := cpuNow(), time.Now()
	ms, err := r.startMembers(ctx, "benchcount", eosPrefix+">", add(eosPrefix))
	if err != nil {
		return res, err
	}
	err = waitApplied(ctx, ms, n, prog)
	el, cs := time.Since(t0), c0.since()
	err = errors.Join(err, stopMembers(ms, memberStop))
	finish(&res, n, el, cs)
	if err != nil {
		return res, err
	}
	bad, err := r.checkSums(ctx, eosPrefix, r.o.EOSEvents)
	res.Extra["exact"] = 1
	if bad != 0 {
		res.Extra["exact"] = 0
		res.Extra["wrong_counters"] = float64(bad)
	}
	return res, err
}

// checkSums compares every counter with the n events published under
// prefix and returns how many differ.
func (r *Runner) checkSums(ctx context.Context, prefix string, n int) (int, error) {
	store, err := txn.NewStore(r.t.Conn, txn.WithLogger(r.o.Logger))
	if err != nil {
		return 0, err
	}
	want := map[string]string{}
	cnt, sum := map[string]int64{}, map[string]int64{}
	for i := range n {
		k := "benchsum." + strings.TrimPrefix(r.topic(prefix, i), prefix)
		cnt[k]++
		sum[k] += int64(i / r.o.Topics)
	}
	var keys []string
	for k := range cnt {
		keys = append(keys, k)
		want[k] = strconv.FormatInt(cnt[k], 10) + ":" + strconv.FormatInt(sum[k], 10)
	}
	got, err := store.GetMany(ctx, keys)
	if err != nil {
		return 0, err
	}
	bad := 0
	for _, k := range keys {
		if string(got[k].Value) != want[k] {
			bad++
		}
	}
	if bad > 0 {
		return bad, fmt.Errorf("%d of %d counters are not exact", bad, len(keys))
	}
	return 0, nil
}
