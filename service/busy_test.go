package service_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
)

// TestBusyProcessHeartbeats keeps every core of this process busy while a
// service heartbeats every 20 ms, and reads the heartbeats it really sends
// as every reader does (service.DecodeHeartbeat): each must decode (a CPU share within [0,1], every
// figure valid), and the share must show the work.
func TestBusyProcessHeartbeats(t *testing.T) {
	c := clustertest.Start(t, 1)
	nc := clustertest.Connect(t, c)
	svc, err := service.New(service.Options{
		Conn: nc, Name: "busy", Logger: clustertest.Logger(), HeartbeatInterval: 20 * time.Millisecond,
		Endpoints: []service.Endpoint{{Name: "noop", Subject: "busy.noop", Handler: service.Func(func(context.Context, *service.Request) (any, error) {
			return nil, nil
		})}},
	})
	require.NoError(t, err)
	sub, err := clustertest.Connect(t, c).SubscribeSync(service.HeartbeatSubject(svc.MicroName(), "*"))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	<-svc.Ready()

	busy, stopBusy := context.WithCancel(t.Context())
	defer stopBusy()
	for range runtime.NumCPU() {
		go func() {
			for x := 0; busy.Err() == nil; x++ {
			}
		}()
	}
	maxCPU := 0.0
	for i := range 50 {
		m, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err, "heartbeat %d", i)
		l, err := service.DecodeHeartbeat(m.Header, m.Data)
		require.NoError(t, err, "heartbeat %d as readers decode it: %s", i, m.Data)
		maxCPU = max(maxCPU, l.CPU)
	}
	stopBusy()
	if maxCPU < 0.1 {
		t.Fatalf("a process busy on every core reported at most %.3f of the machine's CPU", maxCPU)
	}
	t.Logf("busy on %d cores: cpu share up to %.2f", runtime.NumCPU(), maxCPU)
}
