package cluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/streams"
)

func TestTLSClientsAndRoutes(t *testing.T) {
	certs := clustertest.NewCerts(t, "platform")
	c := clustertest.StartWith(t, cluster.Options{Nodes: 3, TLS: cluster.TLS{Cert: certs.Cert, Key: certs.Key, CA: certs.CA}})
	url := strings.Join(c.ClientURLs(), ",")

	// A client that trusts the CA works, and an R3 stream forms over the
	// TLS routes.
	nc, err := nats.Connect(url, nats.RootCAs(certs.CA))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := clustertest.Context(t, 60*time.Second)
	// As the platform's own provisioning does, ride out what a cluster
	// that has just started can answer (or leave unanswered, when the
	// meta leader changes under a loaded machine) for a moment.
	// The first publish may find the new stream's group still electing
	// its leader (no response from stream), so it rides that out too.
	retry := jsapi.Retry{
		Backoff:        jsapi.Backoff{Base: 50 * time.Millisecond, Max: time.Second},
		AttemptTimeout: 5 * time.Second,
		Retryable: func(err error) bool {
			return jsapi.IsTransient(err) || jsapi.HasCode(err, jsapi.CodeClusterNoPeers)
		},
		OnRetry: func(err error, _ time.Duration) { t.Logf("R3 over TLS: %v; routes: %s", err, routes(c)) },
	}
	err = retry.Do(ctx, func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		return err
	})
	require.NoError(t, err, "R3 stream over TLS routes; routes: %s", routes(c))
	err = retry.Do(ctx, func(ctx context.Context) error {
		_, err := js.Publish(ctx, "r3.x", []byte("x"), jetstream.WithMsgID("x"))
		return err
	})
	require.NoError(t, err, "publish to R3 over TLS routes")

	// A plain-text client is refused: it never gets a PONG.
	if err := plainConnect(c.ClientURLs()[0]); err == nil {
		t.Fatal("a plain-text connection was accepted by a node that requires TLS")
	} else {
		t.Logf("plain connection refused: %v", err)
	}

	// A client that does not trust the CA is refused.
	other := clustertest.NewCerts(t, "other")
	if _, err := nats.Connect(url, nats.RootCAs(other.CA)); err == nil {
		t.Fatal("a client verifying against another CA connected")
	}
}

// routes tells, per node, how many route connections it has, to explain
// a failure.
func routes(c *cluster.Cluster) string {
	var b strings.Builder
	for _, n := range c.Nodes() {
		if s := n.Server(); s != nil {
			fmt.Fprintf(&b, "%s=%d ", s.Name(), s.NumRoutes())
		}
	}
	return strings.TrimSpace(b.String())
}

// plainConnect speaks the NATS protocol without TLS and returns nil only
// if the server answers PING with PONG.
func plainConnect(hostport string) error {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(hostport, "nats://"), 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(info, `"tls_required":true`) {
		return nil
	}
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "PONG") {
		return nil
	}
	return errors.New(strings.TrimSpace(line))
}

func TestMutualTLSRefusesOtherCA(t *testing.T) {
	certs := clustertest.NewCerts(t, "platform")
	c := clustertest.StartWith(t, cluster.Options{Nodes: 1, TLS: cluster.TLS{Cert: certs.Cert, Key: certs.Key, CA: certs.CA, Verify: true}})
	url := c.ClientURLs()[0]
	other := clustertest.NewCerts(t, "other")
	tests := []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"certificate of the CA", []nats.Option{nats.RootCAs(certs.CA), nats.ClientCert(certs.Cert, certs.Key)}, true},
		{"no certificate", []nats.Option{nats.RootCAs(certs.CA)}, false},
		{"certificate of another CA", []nats.Option{nats.RootCAs(certs.CA), nats.ClientCert(other.Cert, other.Key)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(url, append(tc.opts, nats.Timeout(3*time.Second))...)
			if err == nil {
				// A refused handshake can surface on the first round trip.
				err = nc.Flush()
				nc.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("connect: err = %v, want ok = %v", err, tc.ok)
			}
		})
	}
}

// violations collects the permission errors a connection receives.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		v.mu.Lock()
		v.errs = append(v.errs, err.Error())
		v.mu.Unlock()
	}
}

// wait waits until a violation mentioning subject arrives.
func (v *violations) wait(t *testing.T, subject string) {
	t.Helper()
	clustertest.Eventually(t, 5*time.Second, func() error {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, e := range v.errs {
			if strings.Contains(e, subject) {
				return nil
			}
		}
		return errors.New("no permissions violation for " + subject + " yet")
	})
}

func TestProducerIsRefusedWhatItMayNotDo(t *testing.T) {
	users := []auth.User{
		{Name: "admin", Role: auth.RoleAdmin, Password: "admin-secret"},
		{Name: "producer", Role: auth.RoleProducer, Password: "producer-secret"},
		{Name: "reader", Role: auth.RoleReader, Password: "reader-secret"},
	}
	c := clustertest.StartWith(t, cluster.Options{Nodes: 1, Users: users})
	url := c.ClientURLs()[0]
	ctx := clustertest.Context(t, time.Minute)

	_, err := nats.Connect(url)
	require.Error(t, err, "a connection without credentials")
	admin, err := nats.Connect(url, nats.UserInfo("admin", "admin-secret"))
	require.NoError(t, err)
	defer admin.Close()
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)
	_, err = streams.Provision(ctx, ajs, streams.All(1), nil)
	require.NoError(t, err)

	var v violations
	producer, err := nats.Connect(url, nats.UserInfo("producer", "producer-secret"), nats.CustomInboxPrefix(auth.InboxPrefix("producer")), nats.ErrorHandler(v.handler))
	require.NoError(t, err)
	defer producer.Close()
	pjs, err := jetstream.New(producer)
	require.NoError(t, err)

	forbidden := []struct {
		name    string
		subject string
		do      func() error
	}{
		{"publish to EVENTS directly", "events.orders", func() error { return producer.Publish("events.orders", []byte("x")) }},
		{"read EVENTS", "events.>", func() error { _, err := producer.SubscribeSync("events.>"); return err }},
		{"create a consumer on EVENTS", "$JS.API.CONSUMER.CREATE.EVENTS", func() error {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := pjs.CreateConsumer(cctx, streams.Events, jetstream.ConsumerConfig{})
			if err == nil {
				return errors.New("consumer created")
			}
			return nil
		}},
		{"write a KV bucket directly", "$KV.STATE.acct", func() error { return producer.Publish(streams.KVSubject(streams.BucketState, "acct"), []byte("1")) }},
		{"publish a heartbeat", "hb.txn.fake", func() error { return producer.Publish(streams.HeartbeatSubject("txn", "fake"), []byte("{}")) }},
		{"delete a stream", "$JS.API.STREAM.DELETE.EVENTS", func() error {
			return producer.PublishRequest("$JS.API.STREAM.DELETE.EVENTS", producer.NewRespInbox(), nil)
		}},
	}
	for _, f := range forbidden {
		t.Run(f.name, func(t *testing.T) {
			require.NoError(t, f.do())
			require.NoError(t, producer.Flush())
			v.wait(t, f.subject)
		})
	}
	for _, s := range []string{streams.Events, streams.KVStream(streams.BucketState)} {
		str, err := ajs.Stream(ctx, s)
		require.NoError(t, err, "stream %s still exists", s)
		info, err := str.Info(ctx)
		require.NoError(t, err)
		if info.State.Msgs != 0 {
			t.Errorf("stream %s holds %d messages after refused writes, want 0", s, info.State.Msgs)
		}
	}

	// What a producer may do draws no violation.
	v.mu.Lock()
	before := len(v.errs)
	v.mu.Unlock()
	require.NoError(t, producer.Publish(streams.IngestSubject("orders"), []byte("{}")))
	_, err = producer.Request("txn.commit", []byte("{}"), 200*time.Millisecond)
	require.ErrorIs(t, err, nats.ErrNoResponders, "txn.commit goes out (no txn service runs here)")
	require.NoError(t, producer.Flush())
	v.mu.Lock()
	after := v.errs[before:]
	v.mu.Unlock()
	require.Empty(t, after, "allowed actions drew violations")

	// A reader reads KV and consumes EVENTS but may not publish events.
	_, err = ajs.Publish(ctx, streams.EventSubject("orders"), []byte("e1"))
	require.NoError(t, err)
	var rv violations
	reader, err := nats.Connect(url, nats.UserInfo("reader", "reader-secret"), nats.CustomInboxPrefix(auth.InboxPrefix("reader")), nats.ErrorHandler(rv.handler))
	require.NoError(t, err)
	defer reader.Close()
	rjs, err := jetstream.New(reader)
	require.NoError(t, err)
	cons, err := rjs.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err, "reader creates a consumer on EVENTS")
	m, err := clustertest.Next(cons, 5*time.Second)
	require.NoError(t, err, "reader consumes EVENTS")
	require.Equal(t, "e1", string(m.Data()))
	kv, err := rjs.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err, "reader opens a KV bucket")
	_, err = kv.Get(ctx, "nothing")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "reader reads a KV bucket")
	require.NoError(t, reader.Publish(streams.EventSubject("orders"), []byte("x")))
	require.NoError(t, reader.Flush())
	rv.wait(t, "events.orders")
}
