package app_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/auth"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/natsconn"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// TestPlatformWithTLSAndAuth runs every service on three nodes that speak
// only mutual TLS, to clients and between themselves, and admit only the
// users of a file made by auth.Init, then uses it as a producer and a reader.
func TestPlatformWithTLSAndAuth(t *testing.T) {
	certs := clustertest.NewCerts(t, "platform")
	authDir := t.TempDir()
	users, err := auth.Init(authDir)
	require.NoError(t, err)

	opts := embedded(t, 3, t.TempDir())
	opts.TLSCert, opts.TLSKey, opts.TLSCA, opts.TLSVerify = certs.Cert, certs.Key, certs.CA, true
	opts.Auth = users
	p := startApp(t, opts)
	url := strings.Join(p.app.Cluster().ClientURLs(), ",")
	ctx := clustertest.Context(t, 2*time.Minute)

	as := func(user string) *nats.Conn {
		nc, err := natsconn.Connect(natsconn.Options{
			URL: url, Name: user, CA: certs.CA, Cert: certs.Cert, Key: certs.Key,
			NkeySeed: filepath.Join(authDir, user+".nk"), InboxPrefix: auth.InboxPrefix(user),
		})
		require.NoError(t, err, "connect as %s", user)
		t.Cleanup(nc.Close)
		return nc
	}
	if _, err := natsconn.Connect(natsconn.Options{URL: url, CA: certs.CA, Cert: certs.Cert, Key: certs.Key}); err == nil {
		t.Fatal("a TLS client without credentials connected")
	}

	// An eavesdropping producer listens on every inbox it can name, and on
	// everything; the real services answer the others meanwhile.
	var (
		heardMu sync.Mutex
		heard   []string
	)
	eavesdropper := as("producer")
	for _, s := range []string{"_INBOX.>", ">", "_INBOX_admin.>", "_INBOX_reader.>", "_INBOX_platform.>"} {
		_, err := eavesdropper.Subscribe(s, func(m *nats.Msg) {
			heardMu.Lock()
			heard = append(heard, m.Subject+" "+string(m.Data))
			heardMu.Unlock()
		})
		require.NoError(t, err)
	}
	require.NoError(t, eavesdropper.Flush())
	defer func() {
		require.NoError(t, eavesdropper.Flush())
		heardMu.Lock()
		defer heardMu.Unlock()
		if len(heard) > 0 {
			t.Errorf("a producer heard %d messages of other users, first %q", len(heard), heard[0])
		}
	}()

	producer := as("producer")
	msg, err := producer.Request(streams.IngestSubject("orders"), []byte(`{"id":1}`), 10*time.Second)
	require.NoError(t, err, "producer ingests")
	require.NotContains(t, string(msg.Data), `"error"`, "ingest answer %s", msg.Data)
	var commit txn.CommitResponse
	msg, err = producer.Request("txn.commit", []byte(`{"writes":{"acct.tls":"1"}}`), 10*time.Second)
	require.NoError(t, err, "producer commits")
	require.NoError(t, json.Unmarshal(msg.Data, &commit), "txn.commit answered %s", msg.Data)
	require.True(t, commit.Committed, "txn.commit answered %s", msg.Data)
	// What the producer may call it may call through the balancer.
	clustertest.Eventually(t, 10*time.Second, func() error {
		msg, err := producer.Request(streams.RouteSubject("txn.get"), []byte(`{"keys":["acct.tls"]}`), 5*time.Second)
		if err != nil {
			return fmt.Errorf("route.txn.get as producer: %w", err)
		}
		if strings.Contains(string(msg.Data), `"error"`) {
			return fmt.Errorf("route.txn.get answered %s", msg.Data)
		}
		return nil
	})

	reader := as("reader")
	rjs, err := jetstream.New(reader)
	require.NoError(t, err)
	cons, err := rjs.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	m, err := clustertest.Next(cons, 10*time.Second)
	require.NoError(t, err, "reader consumes the ingested event")
	require.True(t, strings.HasPrefix(m.Subject(), streams.EventSubject("orders")), "event subject %s", m.Subject())

	// The reader takes and acknowledges the event through a consumer
	// group the admin created; it may not create one itself.
	admin := as("admin")
	msg, err = admin.Request(streams.ConsumeSubject("tls", "create"), []byte(`{"filter":["events.orders"]}`), 10*time.Second)
	require.NoError(t, err, "admin creates a consumer group")
	require.NotContains(t, string(msg.Data), `"error"`, "consume.tls.create answered %s", msg.Data)
	var next consume.NextResponse
	clustertest.Eventually(t, 30*time.Second, func() error {
		msg, err := reader.Request(streams.ConsumeSubject("tls", "next"), []byte(`{"max":10,"wait_ms":1000}`), 10*time.Second)
		if err != nil {
			return fmt.Errorf("consume.tls.next as reader: %w", err)
		}
		if err := json.Unmarshal(msg.Data, &next); err != nil || len(next.Events) == 0 {
			return fmt.Errorf("consume.tls.next answered %s", msg.Data)
		}
		return nil
	})
	msg, err = reader.Request(streams.ConsumeSubject("tls", "ack"), []byte(`{"ack":["`+next.Events[0].Token+`"]}`), 10*time.Second)
	require.NoError(t, err, "consume.tls.ack as reader")
	require.Contains(t, string(msg.Data), `"settled":1`, "consume.tls.ack answered %s", msg.Data)
	_, err = reader.Request(streams.ConsumeSubject("mine", "create"), []byte(`{}`), time.Second)
	require.Error(t, err, "a reader created a consumer group")

	state, err := rjs.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	// A direct KV read may be answered by a replica a moment behind the
	// commit on three nodes: wait for it.
	clustertest.Eventually(t, 5*time.Second, func() error {
		e, err := state.Get(ctx, "acct.tls")
		if err != nil {
			return fmt.Errorf("reader reads the committed key: %w", err)
		}
		if string(e.Value()) != "1" {
			return fmt.Errorf("acct.tls = %q, want 1", e.Value())
		}
		return nil
	})

	// The admin reads the key through the txn service and the bucket.
	msg, err = admin.Request("txn.get", []byte(`{"keys":["acct.tls"]}`), 10*time.Second)
	require.NoError(t, err, "admin's txn.get")
	require.Contains(t, string(msg.Data), `"acct.tls"`, "txn.get answered %s", msg.Data)
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)
	akv, err := ajs.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	_, err = akv.Get(ctx, "acct.tls")
	require.NoError(t, err, "admin's KV read")

	// Heartbeats reach the detector, which records every service instance.
	members, err := rjs.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	clustertest.Eventually(t, 30*time.Second, func() error {
		keys, err := members.Keys(ctx)
		if err != nil {
			return err
		}
		for _, svc := range []string{"platform-txn.", "platform-replicator.", "platform-detector."} {
			found := false
			for _, k := range keys {
				found = found || strings.HasPrefix(k, svc)
			}
			if !found {
				return fmt.Errorf("no %s member yet in %v", svc, keys)
			}
		}
		return nil
	})
}

// TestAlertsHTTPOffLoopbackNeedsWebConfigUnderAuth: under --auth the
// alerting HTTP API is not served beyond loopback without a web config.
func TestAlertsHTTPOffLoopbackNeedsWebConfigUnderAuth(t *testing.T) {
	users, err := auth.Init(t.TempDir())
	require.NoError(t, err)
	opts := embedded(t, 1, t.TempDir())
	opts.Auth = users
	opts.Catalog = app.Services()
	opts.Services = []string{"alerting"}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	for _, s := range opts.Catalog {
		if s.Flags != nil {
			s.Flags(fs)
		}
	}
	require.NoError(t, fs.Parse([]string{"--alerts-http", "0.0.0.0:0"}))
	opts.Logger, opts.HTTPAddr = clustertest.Logger(), "127.0.0.1:0"
	a, err := app.New(opts)
	require.NoError(t, err)
	ctx := clustertest.Context(t, time.Minute)
	err = a.Run(ctx)
	require.ErrorContains(t, err, "web config", "platform run --auth --alerts-http 0.0.0.0:…")
}
