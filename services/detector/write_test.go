package detector

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// While the MEMBERS and DETECTOR stream leaders step down, 100 instances
// die at once: every transition still lands in DETECTOR and every final
// state in MEMBERS, because writes are held until acknowledged and
// retried.
func TestLiveLeaderStepDownsLoseNoTransition(t *testing.T) {
	t.Parallel()
	c, nc, js := clustertest.Provisioned(t, 3)
	kv := membersKV(t, js)
	startDetector(t, c, nil)

	const n = 100
	interval := 100 * time.Millisecond
	sender := clustertest.Connect(t, c)
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for seq := uint64(1); ; seq++ {
			body, _ := json.Marshal(service.Load{Seq: seq, IntervalMS: interval.Milliseconds()})
			for i := range n {
				_ = sender.Publish(service.HeartbeatSubject("burst", fmt.Sprintf("i%d", i)), body)
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	})
	states := func(want membership.State) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i := range n {
			key := fmt.Sprintf("burst.i%d", i)
			m, err := memberState(ctx, kv, key)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if m.State != want {
				return fmt.Errorf("%s is %s, want %s", key, m.State, want)
			}
		}
		return nil
	}
	clustertest.Eventually(t, 30*time.Second, func() error { return states(membership.Alive) })

	// The burst: every instance dies, and both leaders move while the
	// detector publishes its suspicions and deaths.
	// Leaders keep moving from the last heartbeat until well past the
	// deaths (about 0.7 s later): each step-down waits for the next leader,
	// then the other stream's leader goes.
	close(stop)
	<-stopped
	moves := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); moves++ {
		clustertest.StepDown(t, c, nc, streams.Detector)
		clustertest.StepDown(t, c, nc, streams.KVStream(streams.BucketMembers))
	}
	t.Logf("%d rounds of leader step-downs", moves)

	clustertest.Eventually(t, 60*time.Second, func() error { return states(membership.Dead) })
	clustertest.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, streams.Detector)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("detector.*.burst.*"))
		if err != nil {
			return err
		}
		for i := range n {
			alive := info.State.Subjects[streams.DetectorSubject(string(membership.Alive), "burst", fmt.Sprintf("i%d", i))]
			dead := info.State.Subjects[streams.DetectorSubject(string(membership.Dead), "burst", fmt.Sprintf("i%d", i))]
			suspect := info.State.Subjects[streams.DetectorSubject(string(membership.Suspect), "burst", fmt.Sprintf("i%d", i))]
			if alive != 1 || dead != 1 || suspect > 1 {
				return fmt.Errorf("burst.i%d: alive %d, suspect %d, dead %d transitions, want 1, at most 1, 1", i, alive, suspect, dead)
			}
		}
		return nil
	})
	require.NoError(t, states(membership.Dead))
}

// A micro service instance whose connection closes is dead as soon as a
// late probe finds no responders, long before its silence would be
// judged: the tolerated pause here is 100 s.
func TestLiveClosedConnectionIsDeadByProbe(t *testing.T) {
	t.Parallel()
	c, js := liveCluster(t)
	kv := membersKV(t, js)
	nc := clustertest.Connect(t, c)
	o := LocalOptions()
	o.Conn = nc
	o.Logger = clustertest.Logger()
	o.PauseIntervals = 1000
	d, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-d.Ready()

	inc := clustertest.Connect(t, c)
	inst, err := service.New(service.Options{Conn: inc, Name: "demo", HeartbeatInterval: 100 * time.Millisecond, Logger: clustertest.Logger()})
	require.NoError(t, err)
	ictx, icancel := context.WithCancel(context.Background())
	idone := make(chan error, 1)
	go func() { idone <- inst.Run(ictx) }()
	t.Cleanup(func() { icancel(); <-idone })
	<-inst.Ready()
	key := membership.Key(inst.MicroName(), inst.ID())

	// Once the detector has probed the instance twice (so the first probe's
	// answer is in: probes of one instance are a probe interval apart),
	// its connection goes as a crashed process's would.
	pinged := make(chan struct{}, 2)
	sub, err := clustertest.Connect(t, c).Subscribe("$SRV.PING."+inst.MicroName()+"."+inst.ID(), func(*nats.Msg) {
		select {
		case pinged <- struct{}{}:
		default:
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	waitState(t, kv, key, membership.Alive, 10*time.Second)
	for range 2 {
		select {
		case <-pinged:
		case <-time.After(10 * time.Second):
			t.Fatal("the detector did not probe the instance twice")
		}
	}
	require.NoError(t, sub.Unsubscribe())
	inc.Close()
	waitState(t, kv, key, membership.Dead, 10*time.Second)
}
