package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/platform/platform/cluster/clustertest"
)

// TestReadyzFollowsQuorum stops nodes of a 3-node platform: with one node
// down every stream keeps a quorum and /readyz stays (or comes back to)
// 200; with two down the streams lose their leaders and /readyz says 503,
// naming them and the peers the running node lost; once the nodes are
// back it is 200 again. /healthz stays 200 throughout: it is liveness
// only.
func TestReadyzFollowsQuorum(t *testing.T) {
	p := startApp(t, embedded(t, 3, t.TempDir()))
	c := p.app.Cluster()
	base := "http://" + p.app.HTTPAddr()
	wantReady := func(what string, d time.Duration) {
		t.Helper()
		clustertest.Eventually(t, d, func() error {
			if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
				return fmt.Errorf("%s: /readyz %d %q", what, code, body)
			}
			return nil
		})
	}
	wantReady("all nodes up", 30*time.Second)

	c.StopNode(2)
	wantReady("one node of three down", 60*time.Second)

	c.StopNode(1)
	var reason string
	clustertest.Eventually(t, 60*time.Second, func() error {
		code, body := httpGet(t, base+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "stream EVENTS") || !strings.Contains(body, "connected to 0 of 2 JetStream peers") {
			return fmt.Errorf("two nodes down: /readyz %d %q, want 503 naming stream EVENTS and the lost peers", code, body)
		}
		reason = body
		return nil
	})
	t.Logf("two of three nodes down: /readyz 503:\n%s", reason)
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d while the cluster is below quorum, want 200 (liveness only)", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, i := range []int{1, 2} {
		if err := c.RestartNode(ctx, i); err != nil {
			t.Fatalf("restart node %d: %v", i, err)
		}
	}
	wantReady("every node back", 90*time.Second)
}
