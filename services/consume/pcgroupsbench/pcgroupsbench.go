// Package pcgroupsbench runs orbit.go's partitioned consumer groups
// (github.com/synadia-io/orbit.go/pcgroups) and the platform's consumer
// group (services/consume) side by side on the same events: throughput
// with an acknowledgement per event, and failover time when a member
// crashes. It is a benchmark only (go test -bench); the platform binary
// does not link pcgroups.
package pcgroupsbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/pcgroups"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/consume/consumebench"
	"github.com/platform/platform/streams"
)

// Options size the benchmark.
type Options struct {
	// Events is how many events each side reads in the throughput rows
	// (default 1,000,000), one stream message each.
	Events int
	// Members is the group size on both sides (default 4).
	Members int
	// Topics is how many topics the events spread over (default 64).
	Topics int
	// Partitions is the partition count on both sides (default
	// consume.DefaultPartitions): pcgroups' MaxMembers, which is its
	// partition count.
	Partitions int
	// Rounds is how many member crashes each side's failover row measures
	// (default 5).
	Rounds int
	// Detect is how long a crashed member goes unnoticed on both sides
	// (default 5s): pcgroups' AckWait, from which it derives the pinned
	// TTL (its own default is also 5s), and the platform members' TTL
	// (consume.DefaultTTL).
	Detect time.Duration
	// MaxAckPending is the acknowledgements pending per pcgroups member
	// consumer (default 10,000, as the stock consumer row of
	// consumebench; pcgroups pulls in nats.go's default batches of 500,
	// which it does not let its users change).
	MaxAckPending int
	// FeedRate is the events per second published during the failover
	// rows (default 2,000).
	FeedRate int
	// Progress receives progress bars (nil: none).
	Progress io.Writer
	// Logger receives the platform members' logs (default: discarded).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Events == 0 {
		o.Events = 1_000_000
	}
	if o.Members == 0 {
		o.Members = 4
	}
	if o.Topics == 0 {
		o.Topics = 64
	}
	if o.Partitions == 0 {
		o.Partitions = consume.DefaultPartitions
	}
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	if o.Detect == 0 {
		o.Detect = consume.DefaultTTL
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 10_000
	}
	if o.FeedRate == 0 {
		o.FeedRate = 2000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Stream is the stream pcgroups reads: a static consumer group needs the
// partition number as the first token of every stored subject, which a
// subject transform on the stream puts there. EVENTS cannot carry that
// transform without renaming every platform subject, so pcgroups gets a
// stream of its own with EVENTS' storage, replicas and compression.
const (
	Stream = "PCGBENCH"
	// pcgPrefix is the subjects of Stream before the transform.
	pcgPrefix = "pcgbench."
	// platformPrefix and failPrefix are the platform side's events in
	// EVENTS: the throughput row's and the failover row's.
	platformPrefix = streams.EventsPrefix + "bench.pcgside."
	failPrefix     = streams.EventsPrefix + "bench.pcgfail."
)

// Runner runs the rows against one target.
type Runner struct {
	t  *target.Target
	cb *consumebench.Runner
	o  Options
}

// New returns a runner on t.
func New(t *target.Target, o Options) *Runner {
	o.setDefaults()
	cb := consumebench.New(t, consumebench.Options{Events: o.Events, Members: o.Members, Topics: o.Topics,
		TTL: o.Detect, Progress: o.Progress, Logger: o.Logger})
	return &Runner{t: t, cb: cb, o: o}
}

// Setup creates Stream, partitioned over Partitions by the topic token
// with the transform pcgroups' documentation gives
// ({{Partition(n,1)}} ahead of the subject).
func (r *Runner) Setup(ctx context.Context) error {
	s, err := r.t.JS.Stream(ctx, streams.Events)
	if err != nil {
		return fmt.Errorf("stream %s: %w", streams.Events, err)
	}
	ev := s.CachedInfo().Config
	_, err = r.t.JS.CreateStream(ctx, jetstream.StreamConfig{
		Name: Stream, Subjects: []string{pcgPrefix + "*"},
		Storage: ev.Storage, Replicas: ev.Replicas, Compression: ev.Compression,
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      pcgPrefix + "*",
			Destination: fmt.Sprintf("{{Partition(%d,1)}}.%s{{Wildcard(1)}}", r.o.Partitions, pcgPrefix),
		},
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", Stream, err)
	}
	return nil
}

// Publish stores the same Events events for both sides: under Stream for
// pcgroups and in EVENTS for the platform's group, one message each,
// event i on topic t(i mod Topics).
func (r *Runner) Publish(ctx context.Context) error {
	if err := r.cb.PublishPlain(ctx, pcgPrefix, r.o.Events); err != nil {
		return fmt.Errorf("publish for pcgroups: %w", err)
	}
	if err := r.cb.PublishPlain(ctx, platformPrefix, r.o.Events); err != nil {
		return fmt.Errorf("publish for the platform: %w", err)
	}
	return nil
}

// All runs every row: Setup, Publish, both throughput rows, both
// failover rows; the platform rows carry their ratios to pcgroups'
// (x_pcgroups for rates, x_pcgroups_cpu and x_pcgroups_p50/_p99 as
// platform over pcgroups).
func (r *Runner) All(ctx context.Context) ([]bench.Result, error) {
	if err := r.Setup(ctx); err != nil {
		return nil, err
	}
	if err := r.Publish(ctx); err != nil {
		return nil, err
	}
	var out []bench.Result
	pcg, err := r.PCGroups(ctx)
	out = append(out, pcg)
	if err != nil {
		return out, err
	}
	plat, err := r.Platform(ctx)
	if err == nil && pcg.EventsPerSec > 0 {
		plat.Extra["x_pcgroups"] = plat.EventsPerSec / pcg.EventsPerSec
		plat.Extra["x_pcgroups_cpu"] = plat.Extra["cpu_s_per_M"] / pcg.Extra["cpu_s_per_M"]
	}
	out = append(out, plat)
	if err != nil {
		return out, err
	}
	pf, err := r.PCGroupsFailover(ctx)
	out = append(out, pf)
	if err != nil {
		return out, err
	}
	ff, err := r.PlatformFailover(ctx)
	if err == nil && pf.P50MS > 0 {
		ff.Extra["x_pcgroups_p50"] = ff.P50MS / pf.P50MS
		ff.Extra["x_pcgroups_p99"] = ff.P99MS / pf.P99MS
	}
	out = append(out, ff)
	return out, err
}

// consumerConfig is the template every pcgroups member consumer is made
// from: explicit acks (per message), AckWait = Detect, MaxAckPending.
func (r *Runner) consumerConfig(deliver jetstream.DeliverPolicy) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, AckWait: r.o.Detect,
		MaxAckPending: r.o.MaxAckPending, DeliverPolicy: deliver}
}

func (r *Runner) memberNames() []string {
	var ms []string
	for i := range r.o.Members {
		ms = append(ms, fmt.Sprintf("m%d", i))
	}
	return ms
}

// pcgInstance is one running instance of a pcgroups member, on a
// connection of its own.
type pcgInstance struct {
	id     string
	member string
	nc     *nats.Conn
	cc     pcgroups.ConsumerGroupConsumeContext
	// ended is closed when the instance stopped consuming, by Stop or on
	// its own (its group's config deleted or changed); endErr says why.
	ended  chan struct{}
	endErr error
}

// startPCG joins instance id of member to static group on a connection
// of its own; handle gets every message it is given.
func (r *Runner) startPCG(ctx context.Context, group, member, id string, cfg jetstream.ConsumerConfig, handle func(jetstream.Msg)) (*pcgInstance, error) {
	nc, err := r.t.Connect()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	cc, err := pcgroups.StaticConsume(ctx, js, Stream, group, member, handle, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("pcgroups member %s: %w", member, err)
	}
	p := &pcgInstance{id: id, member: member, nc: nc, cc: cc, ended: make(chan struct{})}
	go func() {
		// Done yields once, when the instance's control goroutine ends.
		p.endErr = <-cc.Done()
		close(p.ended)
	}()
	return p, nil
}

// stop stops consuming and closes the connection.
func (p *pcgInstance) stop() {
	p.cc.Stop()
	select {
	case <-p.ended:
	case <-time.After(10 * time.Second):
	}
	p.nc.Close()
}

// kill ends the instance as a crash would: its connection closes first,
// so nothing tells the server it left; then its goroutine stops.
func (p *pcgInstance) kill() {
	p.nc.Close()
	p.stop()
}

// deleteStatic deletes the static group, bounded in time as a deferred
// cleanup must be.
func (r *Runner) deleteStatic(group string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = pcgroups.DeleteStatic(ctx, r.t.JS, Stream, group)
}

// seqs is the set of stream sequences acknowledged, one bit each.
type seqs struct {
	mu   sync.Mutex
	bits []uint64
	n    int64
	dups int64
}

// add records seq and returns the distinct sequences so far, and whether
// seq was new.
func (s *seqs) add(seq uint64) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uint64(len(s.bits)) <= seq/64 {
		s.bits = append(s.bits, 0)
	}
	bit := uint64(1) << (seq % 64)
	if s.bits[seq/64]&bit != 0 {
		s.dups++
		return s.n, false
	}
	s.bits[seq/64] |= bit
	s.n++
	return s.n, true
}

func (s *seqs) counts() (distinct, dups int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.dups
}

// createStatic creates the static group with the members; an existing
// group of that name (an earlier run on a kept cluster) is deleted first.
func (r *Runner) createStatic(ctx context.Context, group string) error {
	_ = pcgroups.DeleteStatic(ctx, r.t.JS, Stream, group)
	// A cluster just started may not place the group's consumers yet
	// ("no suitable peers"): retried while the error is transient.
	retry := jsapi.Retry{Backoff: jsapi.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}, Timeout: 30 * time.Second}
	if err := retry.Do(ctx, func(ctx context.Context) error {
		_, err := pcgroups.CreateStatic(ctx, r.t.JS, Stream, group, uint(r.o.Partitions), nil, r.memberNames(), nil)
		return err
	}); err != nil {
		return fmt.Errorf("create pcgroups static group %s: %w", group, err)
	}
	return nil
}

// PCGroups is pcgroups' throughput row: a static group of Members
// members over Partitions partitions, each member on a connection of its
// own, acknowledging every message in its handler. Timed from the group's
// creation to the last message acknowledged and flushed to the server,
// as consumebench's stock row.
func (r *Runner) PCGroups(ctx context.Context) (bench.Result, error) {
	res := bench.Result{Name: fmt.Sprintf("pcgroups/static-%d-ack", r.o.Members)}
	n := int64(r.o.Events)
	prog := bench.NewProgress(r.o.Progress, res.Name, n)
	defer prog.Stop()
	// A message AckWait left unacknowledged (a loaded machine) is handed
	// out again: the row counts distinct stream sequences, as the
	// platform's row counts distinct events, and ends at n of them.
	acked := &seqs{}
	names := r.memberNames()
	byMember := make([]atomic.Int64, len(names))
	done := make(chan struct{})
	var once sync.Once
	failed := make(chan struct{})
	var failOnce sync.Once
	var failErr error
	fail := func(err error) { failOnce.Do(func() { failErr = err; close(failed) }) }
	handle := func(i int) func(jetstream.Msg) {
		return func(m jetstream.Msg) {
			md, err := m.Metadata()
			if err == nil {
				err = m.Ack()
			}
			if err != nil {
				fail(fmt.Errorf("pcgroups member %s: ack: %w", names[i], err))
				return
			}
			byMember[i].Add(1)
			got, fresh := acked.add(md.Sequence.Stream)
			if fresh && got%1024 == 0 {
				prog.Add(1024)
			}
			if got >= n {
				once.Do(func() { close(done) })
			}
		}
	}
	c0, t0 := consumebench.CPUNow(), time.Now()
	const group = "throughput"
	if err := r.createStatic(ctx, group); err != nil {
		return res, err
	}
	defer r.deleteStatic(group)
	var ins []*pcgInstance
	defer func() {
		for _, p := range ins {
			p.stop()
		}
	}()
	for i, m := range names {
		p, err := r.startPCG(ctx, group, m, m, r.consumerConfig(jetstream.DeliverAllPolicy), handle(i))
		if err != nil {
			return res, err
		}
		ins = append(ins, p)
	}
	// An instance that stops consuming on its own hands out nothing more.
	watching := make(chan struct{})
	defer close(watching)
	for _, p := range ins {
		go func() {
			select {
			case <-p.ended:
				fail(fmt.Errorf("pcgroups member %s stopped consuming before the row ended: %v", p.member, p.endErr))
			case <-watching:
			}
		}()
	}
	var err error
	select {
	case <-done:
	case <-failed:
		err = failErr
	case <-ctx.Done():
		distinct, dups := acked.counts()
		per := make([]string, len(names))
		for i, m := range names {
			per[i] = fmt.Sprintf("%s %d", m, byMember[i].Load())
		}
		err = fmt.Errorf("pcgroups: waited for %d distinct messages acknowledged, got %d (and %d again; by member: %s): %w",
			n, distinct, dups, strings.Join(per, ", "), ctx.Err())
	}
	for _, p := range ins {
		if ferr := p.nc.FlushTimeout(10 * time.Second); ferr != nil && err == nil {
			err = fmt.Errorf("pcgroups member %s: flush acknowledgements: %w", p.member, ferr)
		}
	}
	distinct, dups := acked.counts()
	c0.Finish(&res, distinct, time.Since(t0))
	res.Extra["duplicates"] = float64(dups)
	return res, err
}

// Platform is the platform's row on the same workload: consumebench's
// per-event settlement row (Members at-least-once members, Next of up to
// 500, Ack of each token) reading the same events from EVENTS.
func (r *Runner) Platform(ctx context.Context) (bench.Result, error) {
	return r.cb.GroupAckOn(ctx, fmt.Sprintf("platform/group-%d-ack", r.o.Members), "benchpcgside", platformPrefix+">", int64(r.o.Events))
}
