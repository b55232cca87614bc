package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster"
)

// FaultTimeout bounds each wait of the helpers below: a new leader, a
// restarted node.
const FaultTimeout = 30 * time.Second

// StreamLeader returns the index of the node that leads stream (in the
// global account), or -1 while none does.
func StreamLeader(c *cluster.Cluster, stream string) int {
	for i, n := range c.Nodes() {
		if s := n.Server(); s != nil && s.JetStreamIsStreamLeader("$G", stream) {
			return i
		}
	}
	return -1
}

// WaitStreamLeader waits until stream has a leader other than node not
// (-1 for any) and returns its index.
func WaitStreamLeader(t testing.TB, c *cluster.Cluster, stream string, not int) int {
	t.Helper()
	var l int
	Eventually(t, FaultTimeout, func() error {
		if l = StreamLeader(c, stream); l < 0 || l == not {
			return fmt.Errorf("no new %s leader yet (have node %d)", stream, l)
		}
		return nil
	})
	return l
}

// StepDown asks stream's leader to step down through nc, waits for
// another node to lead, and returns the old and new leaders' indexes.
func StepDown(t testing.TB, c *cluster.Cluster, nc *nats.Conn, stream string) (old, leader int) {
	t.Helper()
	old = WaitStreamLeader(t, c, stream, -1)
	m, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, 5*time.Second)
	require.NoError(t, err, "step down %s", stream)
	var resp struct {
		Success bool `json:"success"`
	}
	require.NoError(t, json.Unmarshal(m.Data, &resp))
	require.True(t, resp.Success, "step down %s: %s", stream, m.Data)
	return old, WaitStreamLeader(t, c, stream, old)
}

// RestartNode starts node i again after StopNode and waits until the
// cluster is ready.
func RestartNode(t testing.TB, c *cluster.Cluster, i int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), FaultTimeout)
	defer cancel()
	require.NoError(t, c.RestartNode(ctx, i), "restart node %d", i)
}

// Context returns t.Context() bounded by d, so a test that hangs fails
// with a deadline error instead of running into the suite's timeout. Like
// t.Context() it is cancelled before the test's cleanups run.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// Buffer is a bytes.Buffer that writers (a logger, a process's output) and
// a test may use at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Logger returns a text logger that writes to b.
func (b *Buffer) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
