// Package clusterbench measures the RAFT layer under the platform's streams:
// leader elections (a stream leader stepping down, a leader's node stopping)
// as a publishing client sees them, and publish latency and throughput by
// replica count and fsync policy.
package clusterbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/internal/jsapi"
)

// ElectionOptions configure the election benchmark.
type ElectionOptions struct {
	// Rounds is how many step-downs to measure (default 10).
	Rounds int
	// StopRounds is how many leader node stops to measure (default 3; 0
	// with a negative value). They need Faults, or an embedded cluster,
	// whose nodes stop in-process.
	StopRounds int
	// Faults stops and restarts the leader's node in the node-stop
	// rounds (default: the embedded cluster's in-process stop).
	Faults NodeFaults
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
}

func (o *ElectionOptions) setDefaults() {
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	if o.StopRounds == 0 {
		o.StopRounds = 3
	}
	if o.StopRounds < 0 {
		o.StopRounds = 0
	}
}

const electionStream = "BENCH_ELECTION"

// NodeFaults ends a node and brings it back, for the node-stop rounds.
type NodeFaults interface {
	// Kind names the fault in the result rows ("stop", "kill").
	Kind() string
	// Stop ends the node named name and returns once it has ended.
	Stop(name string) error
	// Restart starts it again on its storage and returns once it serves
	// clients.
	Restart(ctx context.Context, name string) error
}

// inProcess stops an embedded cluster's node in-process: a clean
// shutdown, in which a leaving leader may hand over first.
type inProcess struct{ c *cluster.Cluster }

func (inProcess) Kind() string { return "stop" }

func (f inProcess) index(name string) (int, error) {
	for i, n := range f.c.Nodes() {
		if n.Name() == name {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%s is not a node of the embedded cluster", name)
}

func (f inProcess) Stop(name string) error {
	i, err := f.index(name)
	if err == nil {
		f.c.StopNode(i)
	}
	return err
}

func (f inProcess) Restart(ctx context.Context, name string) error {
	i, err := f.index(name)
	if err != nil {
		return err
	}
	return f.c.RestartNode(ctx, i)
}

// publisher publishes one message at a time and records when each
// acknowledgement arrived, so gaps show how long publishing stalled.
type publisher struct {
	js   jetstream.JetStream
	mu   sync.Mutex
	acks []time.Time
}

func (p *publisher) run(ctx context.Context) {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := p.js.Publish(pctx, "bench.election", []byte("x"))
		cancel()
		if err != nil {
			// Stalled: no leader yet, or the old one no longer answers.
			_ = jsapi.Sleep(ctx, time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.acks = append(p.acks, time.Now())
		p.mu.Unlock()
	}
}

// firstAckAfter returns the first acknowledgement after t.
func (p *publisher) firstAckAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.acks {
		if a.After(t) {
			return a, true
		}
	}
	return time.Time{}, false
}

// stall returns the longest gap between acknowledgements from the last
// one before t to the first one at least settle after t.
func (p *publisher) stall(t time.Time, settle time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gap time.Duration
	prev := time.Time{}
	for _, a := range p.acks {
		if a.After(t.Add(settle)) {
			break
		}
		if !prev.IsZero() && !a.Before(t) {
			gap = max(gap, a.Sub(prev))
		}
		prev = a
	}
	return gap
}

// leaderOf returns the stream's leader as the JetStream API reports it.
func leaderOf(nc *nats.Conn, stream string) (string, error) {
	m, err := nc.Request("$JS.API.STREAM.INFO."+stream, nil, 20*time.Millisecond)
	if err != nil {
		return "", err
	}
	var resp struct {
		jsapi.Response
		Cluster *struct {
			Leader string `json:"leader"`
		} `json:"cluster"`
	}
	if err := jsapi.Decode(m.Data, &resp); err != nil {
		return "", err
	}
	if err := resp.Err(); err != nil {
		return "", err
	}
	if resp.Cluster == nil {
		return "", nil
	}
	return resp.Cluster.Leader, nil
}

// leaderFunc returns the stream's current leader, "" while none.
type leaderFunc func() string

// localLeader reads the leader from the embedded servers themselves: no
// request that could wait out an election, so the figure is the election's.
func localLeader(c *cluster.Cluster, stream string) leaderFunc {
	return func() string {
		for _, n := range c.Nodes() {
			if s := n.Server(); s != nil && s.JetStreamIsStreamLeader(globalAccount, stream) {
				return s.Name()
			}
		}
		return ""
	}
}

// globalAccount is the account of a server without accounts configured.
const globalAccount = "$G"

// apiLeader asks the JetStream API, for a cluster given by URL.
func apiLeader(nc *nats.Conn, stream string) leaderFunc {
	return func() string {
		l, _ := leaderOf(nc, stream)
		return l
	}
}

// waitLeader polls until the stream has a leader other than not.
func waitLeader(ctx context.Context, leader leaderFunc, stream, not string) (string, error) {
	for {
		if l := leader(); l != "" && l != not {
			return l, nil
		}
		if err := jsapi.Sleep(ctx, time.Millisecond); err != nil {
			return "", fmt.Errorf("wait for a new %s leader: %w", stream, err)
		}
	}
}

// Election measures, on an R3 stream with a client publishing one message
// at a time: a step-down's time to a new leader and the client's longest
// publish stall; then (with o.Faults, or on an embedded cluster) the
// leader's node ending: time to a new leader and to the first successful
// publish. The leader is moved off the node the client uses first.
func Election(ctx context.Context, t *target.Target, o ElectionOptions) ([]bench.Result, error) {
	o.setDefaults()
	replicas := 3
	if t.Cluster != nil && len(t.Cluster.Nodes()) < 3 {
		return nil, errors.New("election bench: needs 3 or more nodes")
	}
	_ = t.JS.DeleteStream(ctx, electionStream)
	if err := createStream(ctx, t.JS, jetstream.StreamConfig{
		Name: electionStream, Subjects: []string{"bench.election"}, Replicas: replicas,
		Storage: jetstream.FileStorage, MaxMsgs: 100000,
	}); err != nil {
		return nil, fmt.Errorf("election bench: create stream: %w", err)
	}
	defer func() { _ = t.JS.DeleteStream(context.WithoutCancel(ctx), electionStream) }()

	pnc, err := t.Connect()
	if err != nil {
		return nil, err
	}
	defer pnc.Close()
	pjs, err := jetstream.New(pnc)
	if err != nil {
		return nil, err
	}
	pub := &publisher{js: pjs}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { pub.run(pctx) })
	defer func() { stop(); wg.Wait() }()

	bar := bench.NewProgress(o.Progress, "election", int64(o.Rounds+o.StopRounds))
	defer bar.Stop()

	leader := apiLeader(t.Conn, electionStream)
	if t.Cluster != nil {
		leader = localLeader(t.Cluster, electionStream)
	}
	e := &electionRun{t: t, pub: pub, leader: leader, bar: bar}
	rows, err := e.stepDowns(ctx, o.Rounds)
	if err != nil {
		return nil, err
	}
	faults := o.Faults
	if faults == nil && t.Cluster != nil {
		faults = inProcess{t.Cluster}
	}
	if faults == nil || o.StopRounds == 0 {
		return rows, nil
	}
	more, err := e.stops(ctx, faults, pnc.ConnectedServerName(), o.StopRounds)
	return append(rows, more...), err
}

// electionRun is one Election: the target, the client publishing one
// message at a time, how to learn the stream's leader, and the progress.
type electionRun struct {
	t      *target.Target
	pub    *publisher
	leader leaderFunc
	bar    *bench.Progress
}

// stepDowns measures rounds step-downs: the time to a new leader and the
// client's longest publish stall around each.
func (e *electionRun) stepDowns(ctx context.Context, rounds int) ([]bench.Result, error) {
	var elected, stalls bench.Latencies
	start := time.Now()
	for range rounds {
		old, err := waitLeader(ctx, e.leader, electionStream, "")
		if err != nil {
			return nil, err
		}
		if _, ok := e.pub.firstAckAfter(time.Now()); !ok {
			// Let the publisher get going before the first step-down.
			if err := jsapi.Sleep(ctx, 200*time.Millisecond); err != nil {
				return nil, err
			}
		}
		t0 := time.Now()
		if err := stepDown(e.t.Conn); err != nil {
			return nil, err
		}
		if _, err := waitLeader(ctx, e.leader, electionStream, old); err != nil {
			return nil, err
		}
		elected.Add(time.Since(t0))
		// Let publishing settle, then read the stall around the step-down.
		if err := jsapi.Sleep(ctx, time.Second); err != nil {
			return nil, err
		}
		stalls.Add(e.pub.stall(t0, time.Second))
		e.bar.Add(1)
	}
	return finish(rounds, start, "stepdown new leader", &elected, "stepdown publish stall", &stalls), nil
}

// stops measures rounds ends of the leader's node, moved off the node
// the client uses first: the time to a new leader and to the first
// acknowledged publish. Each node is restarted and caught up after.
func (e *electionRun) stops(ctx context.Context, faults NodeFaults, clients string, rounds int) ([]bench.Result, error) {
	var elected, firstPub bench.Latencies
	start := time.Now()
	for range rounds {
		old, err := leaderAwayFrom(ctx, e.t, e.leader, clients)
		if err != nil {
			return nil, err
		}
		// Stop in the background: a leaving leader may hand over before
		// its shutdown completes, and that is what a client sees.
		stopped := make(chan error, 1)
		t0 := time.Now()
		go func() { stopped <- faults.Stop(old) }()
		_, err = waitLeader(ctx, e.leader, electionStream, old)
		took := time.Since(t0)
		if serr := <-stopped; serr != nil {
			return nil, fmt.Errorf("%s %s: %w", faults.Kind(), old, serr)
		}
		if err != nil {
			return nil, err
		}
		elected.Add(took)
		for {
			if a, ok := e.pub.firstAckAfter(t0); ok {
				firstPub.Add(a.Sub(t0))
				break
			}
			if err := jsapi.Sleep(ctx, time.Millisecond); err != nil {
				return nil, err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = faults.Restart(rctx, old)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("restart %s: %w", old, err)
		}
		// Wait until the restarted node has caught up as a replica.
		if err := waitCurrent(ctx, e.t.Conn, electionStream); err != nil {
			return nil, err
		}
		e.bar.Add(1)
	}
	kind := faults.Kind()
	return finish(rounds, start, "node "+kind+" new leader", &elected, "node "+kind+" first publish", &firstPub), nil
}

// finish returns the two rows of a set of rounds.
func finish(rounds int, start time.Time, name1 string, l1 *bench.Latencies, name2 string, l2 *bench.Latencies) []bench.Result {
	r1, r2 := bench.Result{Name: name1}, bench.Result{Name: name2}
	took := time.Since(start)
	r1.Finish(int64(rounds), took, l1)
	r2.Finish(int64(rounds), took, l2)
	return []bench.Result{r1, r2}
}

// stepDown asks the benchmark stream's leader to step down.
func stepDown(nc *nats.Conn) error {
	m, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+electionStream, nil, 5*time.Second)
	if err != nil {
		return fmt.Errorf("step down: %w", err)
	}
	var resp jsapi.Response
	if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Err() != nil {
		return fmt.Errorf("step down: %s", m.Data)
	}
	return nil
}

// leaderAwayFrom returns the stream's leader once it is not on server
// clients, the node the benchmark's connections use, stepping it down
// while it is: the node-stop rounds measure the election and the first
// publish after it, not a client's reconnection to another node.
func leaderAwayFrom(ctx context.Context, t *target.Target, leader leaderFunc, clients string) (string, error) {
	for {
		l, err := waitLeader(ctx, leader, electionStream, "")
		if err != nil || l != clients {
			return l, err
		}
		if err := stepDown(t.Conn); err != nil {
			return "", fmt.Errorf("move the leader off the clients' node: %w", err)
		}
		if _, err := waitLeader(ctx, leader, electionStream, l); err != nil {
			return "", err
		}
	}
}

// waitCurrent waits until every replica of stream is current.
func waitCurrent(ctx context.Context, nc *nats.Conn, stream string) error {
	for {
		m, err := nc.Request("$JS.API.STREAM.INFO."+stream, nil, time.Second)
		if err == nil {
			var resp struct {
				Cluster *struct {
					Leader   string `json:"leader"`
					Replicas []struct {
						Current bool `json:"current"`
					} `json:"replicas"`
				} `json:"cluster"`
			}
			if json.Unmarshal(m.Data, &resp) == nil && resp.Cluster != nil && resp.Cluster.Leader != "" && len(resp.Cluster.Replicas) >= 2 {
				ok := true
				for _, r := range resp.Cluster.Replicas {
					ok = ok && r.Current
				}
				if ok {
					return nil
				}
			}
		}
		if err := jsapi.Sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("wait for %s replicas to catch up: %w", stream, err)
		}
	}
}

// createStream creates a benchmark's stream, riding out what a cluster
// that has just started refuses for a moment: no leader yet, or "no
// suitable peers" until the meta leader has every node's first report.
func createStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	return jsapi.Retry{
		Backoff:        jsapi.Backoff{Base: 50 * time.Millisecond, Max: time.Second},
		AttemptTimeout: 5 * time.Second,
		Timeout:        30 * time.Second,
		Retryable: func(err error) bool {
			return jsapi.IsTransient(err) || jsapi.HasCode(err, jsapi.CodeClusterNoPeers)
		},
	}.Do(ctx, func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, cfg)
		return err
	})
}
