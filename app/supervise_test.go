package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// readyz returns /readyz's status and body, or 0 while HTTP is not up.
func readyz(t *testing.T, r *running) (int, string) {
	t.Helper()
	addr := r.app.HTTPAddr()
	if addr == "" {
		return 0, ""
	}
	return httpGet(t, "http://"+addr+"/readyz")
}

// TestStartWaitsOutJetStream starts the services against a cluster that
// has lost its quorum (no meta leader, no stream leaders): the process
// waits, says why on /readyz, and becomes ready once the nodes are back.
func TestStartWaitsOutJetStream(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 3)
	c.StopNode(1)
	c.StopNode(2)

	r := launchApp(t, app.Options{NATS: c.Nodes()[0].ClientURL(), Replicas: 3})
	clustertest.Eventually(t, 30*time.Second, func() error {
		code, body := readyz(t, r)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "provisioning streams") {
			return fmt.Errorf("/readyz %d %q, want 503 naming the stream provisioning", code, body)
		}
		return nil
	})
	select {
	case err := <-r.done:
		t.Fatalf("platform exited while JetStream was unavailable: %v", err)
	case <-r.app.Ready():
		t.Fatal("platform ready without a JetStream quorum")
	case <-time.After(2 * time.Second):
	}

	clustertest.RestartNode(t, c, 1)
	clustertest.RestartNode(t, c, 2)
	r.waitReady(t, 90*time.Second)
	clustertest.Eventually(t, 30*time.Second, func() error {
		if code, body := readyz(t, r); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		return nil
	})
}

// flaky is a service that depends on KV bucket FLAKY: it cannot start
// without it and fails when the bucket goes away.
type flaky struct {
	js    jetstream.JetStream
	ready chan struct{}
}

func (f *flaky) Ready() <-chan struct{} { return f.ready }

func (f *flaky) Run(ctx context.Context) error {
	if _, err := f.js.KeyValue(ctx, "FLAKY"); err != nil {
		return fmt.Errorf("open bucket FLAKY: %w", err)
	}
	close(f.ready)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := f.js.KeyValue(ctx, "FLAKY"); errors.Is(err, jetstream.ErrBucketNotFound) {
				return fmt.Errorf("bucket FLAKY: %w", err)
			}
		}
	}
}

// TestFailedServiceRestarted deletes the bucket a service depends on: the
// service is restarted with backoff (counted), its sibling txn keeps
// answering, and once the bucket is back the service serves again.
func TestFailedServiceRestarted(t *testing.T) {
	c, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "FLAKY"})
	require.NoError(t, err)

	catalog := append(app.Services(), app.Service{
		Name: "flaky",
		New: func(d app.Deps) (app.Runner, error) {
			return &flaky{js: d.JS, ready: make(chan struct{})}, nil
		},
	})
	reg := prometheus.NewRegistry()
	r := startApp(t, app.Options{
		NATS: c.ClientURLs()[0], Catalog: catalog, Services: []string{"txn", "flaky"}, Registry: reg,
	})
	nc := clustertest.Connect(t, c)
	commit := func(v int) error {
		m, err := nc.Request(streams.TxnCommitSubject, fmt.Appendf(nil, `{"writes":{"sup.k":"%d"}}`, v), 5*time.Second)
		if err != nil {
			return err
		}
		if strings.Contains(string(m.Data), `"error"`) {
			return fmt.Errorf("commit: %s", m.Data)
		}
		return nil
	}
	require.NoError(t, commit(0))

	require.NoError(t, js.DeleteKeyValue(ctx, "FLAKY"))
	clustertest.Eventually(t, 30*time.Second, func() error {
		if n := restarts(t, reg, "flaky"); n < 2 {
			return fmt.Errorf("flaky restarted %v times, want at least 2", n)
		}
		code, body := readyz(t, r)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "service flaky restarting") {
			return fmt.Errorf("/readyz %d %q, want 503 naming flaky", code, body)
		}
		return nil
	})
	for i := 1; i <= 20; i++ {
		require.NoError(t, commit(i), "txn keeps answering while its sibling restarts")
	}
	if n := restarts(t, reg, "txn"); n != 0 {
		t.Fatalf("txn restarted %v times, want 0", n)
	}

	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "FLAKY"})
	require.NoError(t, err)
	clustertest.Eventually(t, 60*time.Second, func() error {
		if code, body := readyz(t, r); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		return nil
	})
	select {
	case err := <-r.done:
		t.Fatalf("platform exited: %v", err)
	default:
	}
}

// restarts reads platform_service_restarts_total for svc.
func restarts(t *testing.T, reg *prometheus.Registry, svc string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "platform_service_restarts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue(m, "service") == svc {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestStartWaitsForKVLeader starts the platform while the cluster has a
// meta leader but bucket MEMBERS has no leader (its only replica's node is
// down, and with it whatever else was placed there): the process stays up,
// /readyz says what it waits for, and it is ready once the node is back.
func TestStartWaitsForKVLeader(t *testing.T) {
	c := clustertest.Start(t, 3)
	_, js := clustertest.JetStream(t, c)
	ctx := clustertest.Context(t, 2*time.Minute)
	_, err := streams.Provision(ctx, js, streams.All(1), nil)
	require.NoError(t, err)
	down := clustertest.WaitStreamLeader(t, c, streams.KVStream(streams.BucketMembers), -1)
	c.StopNode(down)
	up := c.Nodes()[(down+1)%3].ClientURL()

	r := launchApp(t, app.Options{NATS: up, Replicas: 1, Services: []string{"detector"}})
	clustertest.Eventually(t, 60*time.Second, func() error {
		code, body := readyz(t, r)
		if code != http.StatusServiceUnavailable || body == "" {
			return fmt.Errorf("/readyz %d %q, want 503 with a reason", code, body)
		}
		return nil
	})
	select {
	case err := <-r.done:
		t.Fatalf("platform exited while MEMBERS had no leader: %v", err)
	case <-r.app.Ready():
		t.Fatal("ready without a MEMBERS leader")
	case <-time.After(3 * time.Second):
	}
	_, body := readyz(t, r)
	t.Logf("while MEMBERS has no leader: /readyz says %q", body)

	clustertest.RestartNode(t, c, down)
	r.waitReady(t, 90*time.Second)
}
