package alerting_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector"
)

// partition is a TCP proxy in front of a NATS server that can cut every
// connection through it and refuse new ones until healed: the instance
// behind it stops heartbeating without saying goodbye, and comes back as
// the same instance.
type partition struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newPartition(t *testing.T, target string) *partition {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &partition{l: l, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = l.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *partition) url() string { return "nats://" + p.l.Addr().String() }

func (p *partition) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

// setCut cuts (true) or heals (false) the partition.
func (p *partition) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

// TestInstanceThatStopsHeartbeating runs the whole path: a service
// instance heartbeating every 50 ms, the detector with LocalOptions and
// an alerting instance. The instance is cut off from the cluster (it stops
// heartbeating, with no leaving heartbeat): the detector declares it dead
// and ALERTS receives alerts.critical.InstanceDead once; the partition
// heals, the same instance heartbeats again, and one resolved
// notification follows.
func TestInstanceThatStopsHeartbeating(t *testing.T) {
	c, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	got := alertsOn(t, ctx, js)

	dopts := detector.LocalOptions()
	dopts.Conn, dopts.Logger = clustertest.Connect(t, c), clustertest.Logger()
	d, err := detector.New(dopts)
	require.NoError(t, err)
	go func() { _ = d.Run(ctx) }()
	select {
	case <-d.Ready():
	case <-ctx.Done():
		t.Fatal("detector not ready")
	}
	s, _ := start(t, ctx, nc, writeRules(t, liveRules))

	u, err := url.Parse(c.ClientURLs()[0])
	require.NoError(t, err)
	p := newPartition(t, u.Host)
	demoConn, err := nats.Connect(p.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(0, 0), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(demoConn.Close)
	demo, err := service.New(service.Options{Conn: demoConn, Name: "demo", HeartbeatInterval: 50 * time.Millisecond,
		Logger: clustertest.Logger()})
	require.NoError(t, err)
	go func() { _ = demo.Run(ctx) }()
	select {
	case <-demo.Ready():
	case <-ctx.Done():
		t.Fatal("demo service not ready")
	}
	instance := demo.ID()

	// Alive first, and the alerting instance sees it.
	clustertest.Eventually(t, 20*time.Second, func() error {
		if !s.Active() {
			return errors.New("alerting not active yet")
		}
		for _, m := range d.Members(demo.MicroName(), membership.Alive) {
			if m.Instance == instance {
				return nil
			}
		}
		return fmt.Errorf("demo instance %s not alive yet", instance)
	})
	require.Empty(t, got(), "no notification while every instance lives")

	p.setCut(true)
	clustertest.Eventually(t, 30*time.Second, func() error {
		if n := len(got()); n != 1 {
			return fmt.Errorf("%d notifications, want 1", n)
		}
		return nil
	})
	m := got()[0]
	require.Equal(t, "firing", m.Status)
	require.Len(t, m.Alerts, 1)
	require.Equal(t, instance, m.Alerts[0].Labels["instance"])
	require.Equal(t, "platform-demo", m.Alerts[0].Labels["service"])

	p.setCut(false)
	clustertest.Eventually(t, 30*time.Second, func() error {
		ms := got()
		if len(ms) < 2 {
			return fmt.Errorf("%d notifications, want a resolved one", len(ms))
		}
		if len(ms) > 2 || ms[1].Status != "resolved" {
			return fmt.Errorf("notifications %d, second %q: want firing then resolved only", len(ms), ms[1].Status)
		}
		return nil
	})
	require.Equal(t, instance, got()[1].Alerts[0].Labels["instance"])
	require.Equal(t, "resolved", got()[1].Alerts[0].Status)
}
