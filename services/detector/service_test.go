package detector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// liveCluster starts a 1-node cluster with the platform's streams.
func liveCluster(t *testing.T) (*cluster.Cluster, jetstream.JetStream) {
	t.Helper()
	c, _, js := clustertest.Provisioned(t, 1)
	return c, js
}

// running is a detector started by a test.
type running struct {
	*Service
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

// stop stops the detector and waits for Run to return; safe to repeat.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
		r.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("detector did not stop")
	}
}

func startDetector(t *testing.T, c *cluster.Cluster, reg prometheus.Registerer) *running {
	t.Helper()
	nc := clustertest.Connect(t, c)
	o := LocalOptions()
	o.Conn = nc
	o.Logger = clustertest.Logger()
	o.Registerer = reg
	d, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Service: d, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	select {
	case <-d.Ready():
	case err := <-r.done:
		t.Fatalf("detector stopped before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("detector not ready")
	}
	return r
}

// beater heartbeats hb.<svc>.<inst> every interval until stopped.
type beater struct {
	nc       *nats.Conn
	subject  string
	interval time.Duration
	mu       sync.Mutex
	seq      uint64
	stopCh   chan struct{}
	wg       sync.WaitGroup
}

func newBeater(nc *nats.Conn, svc, inst string, interval time.Duration) *beater {
	return &beater{nc: nc, subject: service.HeartbeatSubject(svc, inst), interval: interval}
}

func (b *beater) send(leaving bool) {
	b.mu.Lock()
	b.seq++
	l := service.Load{Seq: b.seq, IntervalMS: b.interval.Milliseconds(), CPU: 0.2, Mem: 0.3, Leaving: leaving}
	b.mu.Unlock()
	data, _ := json.Marshal(l)
	_ = b.nc.Publish(b.subject, data)
}

func (b *beater) start() {
	b.stopCh = make(chan struct{})
	b.wg.Go(func() {
		t := time.NewTicker(b.interval)
		defer t.Stop()
		for {
			b.send(false)
			select {
			case <-b.stopCh:
				return
			case <-t.C:
			}
		}
	})
}

func (b *beater) stop() {
	close(b.stopCh)
	b.wg.Wait()
}

// memberState reads key's record from MEMBERS.
func memberState(ctx context.Context, kv jetstream.KeyValue, key string) (membership.Member, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return membership.Member{}, err
	}
	var m membership.Member
	err = json.Unmarshal(e.Value(), &m)
	return m, err
}

func waitState(t *testing.T, kv jetstream.KeyValue, key string, want membership.State, deadline time.Duration) membership.Member {
	t.Helper()
	var got membership.Member
	clustertest.Eventually(t, deadline, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m, err := memberState(ctx, kv, key)
		if err != nil {
			return err
		}
		if m.State != want {
			return fmt.Errorf("%s is %s, want %s", key, m.State, want)
		}
		got = m
		return nil
	})
	return got
}

// transitions counts DETECTOR messages per subject under detector.*.<key>.
func transitions(t *testing.T, js jetstream.JetStream, svc, inst string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, streams.Detector)
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("detector.*."+svc+"."+inst))
	require.NoError(t, err)
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		out[subj] = n
	}
	return out
}

func membersKV(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), streams.BucketMembers)
	require.NoError(t, err)
	return kv
}

func TestLiveDeadAfterStopAliveOnResume(t *testing.T) {
	t.Parallel()
	c, js := liveCluster(t)
	kv := membersKV(t, js)
	startDetector(t, c, nil)

	b := newBeater(clustertest.Connect(t, c), "demo", "i1", 50*time.Millisecond)
	b.start()
	m := waitState(t, kv, "demo.i1", membership.Alive, 5*time.Second)
	require.Equal(t, "demo", m.Service)
	require.Equal(t, "i1", m.Instance)
	b.stop()
	m = waitState(t, kv, "demo.i1", membership.Dead, 5*time.Second)
	require.GreaterOrEqual(t, m.Phi, 8.0, "a dead member's phi passed the threshold")
	require.False(t, m.LastSeen.IsZero())

	b.start() // the same process resumes: sequence continues
	defer b.stop()
	waitState(t, kv, "demo.i1", membership.Alive, 5*time.Second)
	clustertest.Eventually(t, 5*time.Second, func() error {
		got := transitions(t, js, "demo", "i1")
		// membership.Suspect comes between alive and dead unless one evaluation tick
		// saw both deadlines pass (a stalled machine): at most once.
		if got["detector.alive.demo.i1"] != 2 || got["detector.dead.demo.i1"] != 1 || got["detector.suspect.demo.i1"] > 1 || len(got) > 3 {
			return fmt.Errorf("transitions %v, want alive 2, dead 1, suspect at most 1", got)
		}
		return nil
	})
}

func TestLiveLeavingGivesLeft(t *testing.T) {
	t.Parallel()
	c, js := liveCluster(t)
	kv := membersKV(t, js)
	startDetector(t, c, nil)

	nc := clustertest.Connect(t, c)
	leaver := newBeater(nc, "demo", "leaver", 50*time.Millisecond)
	witness := newBeater(nc, "demo", "witness", 50*time.Millisecond)
	leaver.start()
	witness.start()
	waitState(t, kv, "demo.leaver", membership.Alive, 5*time.Second)
	waitState(t, kv, "demo.witness", membership.Alive, 5*time.Second)
	leaver.stop()
	leaver.send(true)
	witness.stop()
	waitState(t, kv, "demo.leaver", membership.Left, 5*time.Second)
	// The witness stopped at the same time without a goodbye: once it is
	// dead, the leaver has been silent as long and must still be left.
	waitState(t, kv, "demo.witness", membership.Dead, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := memberState(ctx, kv, "demo.leaver")
	require.NoError(t, err)
	require.Equal(t, membership.Left, m.State)
	require.Zero(t, transitions(t, js, "demo", "leaver")["detector.dead.demo.leaver"], "a leaving instance is never dead")
}

func TestLiveBadHeartbeatsCountedAndDropped(t *testing.T) {
	t.Parallel()
	c, js := liveCluster(t)
	kv := membersKV(t, js)
	reg := prometheus.NewRegistry()
	d := startDetector(t, c, reg)

	nc := clustertest.Connect(t, c)
	bad := []struct {
		subject string
		data    string
	}{
		{"hb.onlyservice", "{}"},
		{"hb.a.b.c", "{}"},
		{"hb.demo.garbage", "not json"},
		{"hb.demo.absurd", `{"cpu":-3}`},
		{"hb.demo.array", `[1,2]`},
	}
	for _, m := range bad {
		require.NoError(t, nc.Publish(m.subject, []byte(m.data)))
	}
	require.NoError(t, nc.Publish("hb.demo.ok", nil)) // empty body: valid
	waitState(t, kv, "demo.ok", membership.Alive, 5*time.Second)
	clustertest.Eventually(t, 5*time.Second, func() error {
		if got := d.bad.Load(); got != uint64(len(bad)) {
			return fmt.Errorf("bad heartbeats counted %v, want %d", got, len(bad))
		}
		return nil
	})
	for _, k := range []string{"demo.garbage", "demo.absurd", "demo.array"} {
		_, err := kv.Get(context.Background(), k)
		require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "%s must not be a member", k)
	}

	// The members endpoint answers with the view.
	resp, err := nc.Request(streams.MembersListSubject, []byte(`{"service":"demo"}`), 5*time.Second)
	require.NoError(t, err)
	var mr MembersResponse
	require.NoError(t, json.Unmarshal(resp.Data, &mr))
	require.Equal(t, 1, mr.Count, "members of demo: %s", resp.Data)
	require.Equal(t, "ok", mr.Members[0].Instance)
}

func TestLiveTwoDetectorsOneTransitionAndHandover(t *testing.T) {
	t.Parallel()
	c, js := liveCluster(t)
	kv := membersKV(t, js)
	a := startDetector(t, c, nil)
	b := startDetector(t, c, nil)
	clustertest.Eventually(t, 5*time.Second, func() error {
		if a.Active() == b.Active() {
			return fmt.Errorf("active: a=%v b=%v, want exactly one", a.Active(), b.Active())
		}
		return nil
	})

	nc := clustertest.Connect(t, c)
	i1 := newBeater(nc, "demo", "i1", 50*time.Millisecond)
	i1.start()
	waitState(t, kv, "demo.i1", membership.Alive, 5*time.Second)
	i1.stop()
	waitState(t, kv, "demo.i1", membership.Dead, 5*time.Second)

	// Kill the active detector without a goodbye: its connection goes.
	active, standby := a, b
	if b.Active() {
		active, standby = b, a
	}
	i2 := newBeater(nc, "demo", "i2", 50*time.Millisecond)
	i2.start()
	waitState(t, kv, "demo.i2", membership.Alive, 5*time.Second)
	killed := time.Now()
	active.nc.Close()
	i2.stop() // dies while the active detector is gone
	clustertest.Eventually(t, 5*time.Second, func() error {
		if !standby.Active() {
			return errors.New("standby has not taken over")
		}
		return nil
	})
	took := time.Since(killed)
	require.Less(t, took, 2*time.Second, "handover took %s", took)
	waitState(t, kv, "demo.i2", membership.Dead, 5*time.Second)

	// Exactly one transition per change, from two detectors and a handover.
	for _, inst := range []string{"i1", "i2"} {
		clustertest.Eventually(t, 5*time.Second, func() error {
			// membership.Suspect may be skipped: when the standby takes over after the
			// instance died, it publishes the one change alive -> dead.
			got := transitions(t, js, "demo", inst)
			if got["detector.alive.demo."+inst] != 1 || got["detector.dead.demo."+inst] != 1 ||
				got["detector.suspect.demo."+inst] > 1 || len(got) > 3 {
				return fmt.Errorf("transitions of %s: %v, want alive 1, dead 1, suspect at most 1", inst, got)
			}
			return nil
		})
	}
}

// Options{Conn: nc} is a production detector: it learns and it probes.
func TestLiveZeroOptionsLearnAndProbe(t *testing.T) {
	t.Parallel()
	c, _ := liveCluster(t)
	nc := clustertest.Connect(t, c)
	d, err := New(Options{Conn: nc})
	require.NoError(t, err)
	require.False(t, d.tab.Options().NoLearn, "the predictor learns")
	require.Equal(t, DefaultOptions().ProbeInterval, d.opts.ProbeInterval)

	// The detector is itself a micro service instance that heartbeats: once
	// active, it probes it.
	pings := make(chan string, 16)
	sub, err := clustertest.Connect(t, c).Subscribe("$SRV.PING.platform-detector.>", func(m *nats.Msg) {
		select {
		case pings <- m.Subject:
		default:
		}
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	select {
	case subject := <-pings:
		<-d.Ready()
		require.Equal(t, "$SRV.PING.platform-detector."+d.ID(), subject)
	case err := <-done:
		t.Fatalf("detector stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no probe within 10s")
	}
}
