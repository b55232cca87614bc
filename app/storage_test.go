package app_test

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// refusal sends a request and returns its error body, or nil on success.
func refusal(t *testing.T, nc *nats.Conn, subject string, data []byte) *service.Error {
	t.Helper()
	resp, err := nc.Request(subject, data, 10*time.Second)
	require.NoError(t, err, "request %s", subject)
	return service.ParseError(service.JSON, resp.Data)
}

var droppedFull = regexp.MustCompile(`platform_replicator_dropped_events_total\{reason="storage_full"\} (\d+)`)

// TestStorageFull fills a platform whose JetStream store is capped at
// 4 MiB: ingest answers unavailable with reason storage_full at once,
// fire-and-forget events are counted by that reason, txn commits fail
// with a clear error, /readyz says the storage is full, nothing exits;
// once EVENTS is purged everything works again.
func TestStorageFull(t *testing.T) {
	opts := embedded(t, 1, t.TempDir())
	opts.Cluster.MaxStore = 4 << 20
	p := startApp(t, opts)
	nc, js := connect(t, p.app.Cluster().ClientURLs())
	base := "http://" + p.app.HTTPAddr()

	event := make([]byte, 64<<10)
	var full *service.Error
	for i := 0; full == nil; i++ {
		require.Less(t, i, 200, "store of 4 MiB still not full after %d events of 64 KiB", i)
		_, _ = rand.Read(event)
		full = refusal(t, nc, streams.IngestSubject("fill"), event)
	}
	require.Equal(t, service.CodeUnavailable, full.Code, "%s", full.Message)
	require.Equal(t, "storage_full", full.Fields["reason"], "%s", full.Message)
	t.Logf("ingest when full: %s: %s", full.Code, full.Message)

	start := time.Now()
	e := refusal(t, nc, streams.IngestSubject("fill"), []byte(`{"small":true}`))
	require.NotNil(t, e, "a small event stored in a full store")
	require.Equal(t, "storage_full", e.Fields["reason"])
	require.Less(t, time.Since(start), 5*time.Second, "refusal waited for a retry deadline")

	const fire = 20
	for range fire {
		require.NoError(t, nc.Publish(streams.IngestSubject("fill"), []byte(`{"fire":"forget"}`)))
	}
	clustertest.Eventually(t, 30*time.Second, func() error {
		_, metrics := httpGet(t, base+"/metrics")
		m := droppedFull.FindStringSubmatch(metrics)
		if m == nil {
			return fmt.Errorf("no storage_full drops counted yet")
		}
		if n, _ := strconv.Atoi(m[1]); n < fire {
			return fmt.Errorf("%d storage_full drops counted, want at least %d", n, fire)
		}
		return nil
	})

	e = refusal(t, nc, streams.TxnCommitSubject, []byte(`{"writes":{"acct.full":"1"}}`))
	require.NotNil(t, e, "a commit stored in a full store")
	require.Equal(t, service.CodeUnavailable, e.Code, "%s", e.Message)
	require.Contains(t, e.Message, "storage is full")
	t.Logf("txn commit when full: %s: %s", e.Code, e.Message)

	clustertest.Eventually(t, 30*time.Second, func() error {
		code, body := httpGet(t, base+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "storage full") {
			return fmt.Errorf("/readyz %d %q, want 503 saying the storage is full", code, body)
		}
		return nil
	})

	ctx := clustertest.Context(t, 2*time.Minute)
	s, err := js.Stream(ctx, streams.Events)
	require.NoError(t, err)
	require.NoError(t, s.Purge(ctx))

	clustertest.Eventually(t, 30*time.Second, func() error {
		if e := refusal(t, nc, streams.IngestSubject("fill"), []byte(`{"after":"purge"}`)); e != nil {
			return fmt.Errorf("ingest after purge: %w", e)
		}
		if e := refusal(t, nc, streams.TxnCommitSubject, []byte(`{"writes":{"acct.full":"2"}}`)); e != nil {
			return fmt.Errorf("commit after purge: %w", e)
		}
		return nil
	})
	clustertest.Eventually(t, 90*time.Second, func() error {
		if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz after purge %d %q", code, body)
		}
		return nil
	})
	select {
	case err := <-p.done:
		t.Fatalf("platform exited: %v", err)
	default:
	}
}
