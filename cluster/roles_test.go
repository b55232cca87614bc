package cluster_test

import (
	"context"
	"errors"
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
	"github.com/platform/platform/streams"
)

// roleCluster is a one-node cluster with a password user per role, its
// streams provisioned by the admin.
type roleCluster struct {
	url string
	ctx context.Context
}

func startRoleCluster(t *testing.T) roleCluster {
	t.Helper()
	var users []auth.User
	for _, r := range auth.Roles {
		users = append(users, auth.User{Name: r, Role: r, Password: r + "-secret"})
	}
	c := clustertest.StartWith(t, cluster.Options{Nodes: 1, Users: users})
	rc := roleCluster{url: c.ClientURLs()[0], ctx: clustertest.Context(t, time.Minute)}
	admin, _ := rc.connect(t, auth.RoleAdmin)
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)
	_, err = streams.Provision(rc.ctx, ajs, streams.All(1), nil)
	require.NoError(t, err)
	return rc
}

// connect logs in as the user named after role, with its own inbox prefix.
func (rc roleCluster) connect(t *testing.T, role string) (*nats.Conn, *violations) {
	t.Helper()
	v := &violations{}
	nc, err := nats.Connect(rc.url, nats.UserInfo(role, role+"-secret"),
		nats.CustomInboxPrefix(auth.InboxPrefix(role)), nats.ErrorHandler(v.handler))
	require.NoError(t, err, "connect as %s", role)
	t.Cleanup(nc.Close)
	return nc, v
}

// TestNoOneReadsAnotherUsersReplies has a producer and a reader listen on
// every inbox they can name, and on everything, while the admin reads a
// KV value and a service answer, the reader gets an event and the producer
// gets its own answers: neither eavesdropper receives a byte of another
// user's replies.
func TestNoOneReadsAnotherUsersReplies(t *testing.T) {
	rc := startRoleCluster(t)
	ctx := rc.ctx
	admin, _ := rc.connect(t, auth.RoleAdmin)
	svc, _ := rc.connect(t, auth.RoleService)
	producer, pv := rc.connect(t, auth.RoleProducer)
	reader, rv := rc.connect(t, auth.RoleReader)

	// A service answers txn.get with a secret.
	_, err := svc.Subscribe("txn.get", func(m *nats.Msg) { _ = m.Respond([]byte("secret-txn-answer")) })
	require.NoError(t, err)
	require.NoError(t, svc.Flush())
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)
	state, err := ajs.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	_, err = state.Put(ctx, "acct.a", []byte("secret-kv-value"))
	require.NoError(t, err)
	_, err = ajs.Publish(ctx, streams.EventSubject("orders"), []byte("secret-event"))
	require.NoError(t, err)

	type tap struct {
		mu   sync.Mutex
		got  []string
		name string
	}
	listen := func(nc *nats.Conn, v *violations, who string, subjects ...string) *tap {
		tp := &tap{name: who}
		for _, s := range subjects {
			_, err := nc.Subscribe(s, func(m *nats.Msg) {
				tp.mu.Lock()
				tp.got = append(tp.got, m.Subject+" "+string(m.Data))
				tp.mu.Unlock()
			})
			require.NoError(t, err)
		}
		require.NoError(t, nc.Flush())
		for _, s := range subjects {
			v.wait(t, s) // every one of them is refused
		}
		return tp
	}
	pt := listen(producer, pv, "producer", "_INBOX.>", ">", "_INBOX_admin.>", "_INBOX_reader.>", "_INBOX_service.>")
	rt := listen(reader, rv, "reader", "_INBOX.>", ">", "_INBOX_admin.>", "_INBOX_producer.>", "$JS.API.>")

	// The replies the eavesdroppers are after.
	for range 3 {
		m, err := admin.Request("txn.get", []byte(`{"keys":["acct.a"]}`), 5*time.Second)
		require.NoError(t, err, "admin's request")
		require.Equal(t, "secret-txn-answer", string(m.Data))
		e, err := state.Get(ctx, "acct.a")
		require.NoError(t, err, "admin's KV read")
		require.Equal(t, "secret-kv-value", string(e.Value()))

		m, err = producer.Request("txn.get", []byte(`{"keys":["acct.a"]}`), 5*time.Second)
		require.NoError(t, err, "producer's request with its own inbox prefix")
		require.Equal(t, "secret-txn-answer", string(m.Data))

		rjs, err := jetstream.New(reader)
		require.NoError(t, err)
		events, err := rjs.Stream(ctx, streams.Events)
		require.NoError(t, err)
		rm, err := events.GetLastMsgForSubject(ctx, streams.EventSubject("orders"))
		require.NoError(t, err, "reader's message get")
		require.Equal(t, "secret-event", string(rm.Data))
	}
	require.NoError(t, producer.Flush())
	require.NoError(t, reader.Flush())
	for _, tp := range []*tap{pt, rt} {
		tp.mu.Lock()
		if len(tp.got) > 0 {
			t.Errorf("%s received %d messages of other users, first %q", tp.name, len(tp.got), tp.got[0])
		}
		tp.mu.Unlock()
	}

	// A producer that keeps the default prefix cannot hear its answers:
	// the refusal is a permissions violation, not someone else's read.
	plain, err := nats.Connect(rc.url, nats.UserInfo("producer", "producer-secret"))
	require.NoError(t, err)
	defer plain.Close()
	_, err = plain.Request("txn.get", nil, time.Second)
	require.Error(t, err, "a producer without its inbox prefix gets no answer")
}

// TestRolesCannotChangeWhatTheyDoNotOwn: a reader cannot delete or list
// consumers (the platform's KV watchers among them), a service cannot add
// subjects to a stream, shrink it or make a new one, and a producer cannot
// reach the alerting service's internal alerts.fanout.
func TestRolesCannotChangeWhatTheyDoNotOwn(t *testing.T) {
	rc := startRoleCluster(t)
	ctx := rc.ctx
	admin, _ := rc.connect(t, auth.RoleAdmin)
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)

	// The platform's own consumer: a service's KV watcher.
	svc, sv := rc.connect(t, auth.RoleService)
	sjs, err := jetstream.New(svc)
	require.NoError(t, err)
	members, err := sjs.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	w, err := members.WatchAll(ctx)
	require.NoError(t, err)
	defer func() { _ = w.Stop() }()
	kvStream, err := ajs.Stream(ctx, streams.KVStream(streams.BucketMembers))
	require.NoError(t, err)
	var watcher string
	clustertest.Eventually(t, 5*time.Second, func() error {
		names := kvStream.ConsumerNames(ctx)
		for n := range names.Name() {
			watcher = n
		}
		if watcher == "" {
			return errors.New("no watcher consumer yet")
		}
		return names.Err()
	})

	reader, rv := rc.connect(t, auth.RoleReader)
	expectRefused := func(t *testing.T, nc *nats.Conn, v *violations, subject string, body []byte) {
		t.Helper()
		_, err := nc.Request(subject, body, 500*time.Millisecond)
		require.Error(t, err, "%s answered", subject)
		v.wait(t, subject)
	}
	stream := streams.KVStream(streams.BucketMembers)
	t.Run("reader still reads with consumers of its own", func(t *testing.T) {
		rjs, err := jetstream.New(reader)
		require.NoError(t, err)
		_, err = rjs.OrderedConsumer(ctx, streams.Events, jetstream.OrderedConsumerConfig{})
		require.NoError(t, err, "reader creates a consumer of its own")
		kv, err := rjs.KeyValue(ctx, streams.BucketMembers)
		require.NoError(t, err)
		rw, err := kv.WatchAll(ctx)
		require.NoError(t, err, "reader watches a bucket")
		select {
		case <-rw.Updates():
		case <-time.After(5 * time.Second):
			t.Fatal("the reader's watch delivered nothing")
		}
		// Not stopped: Stop would ask to delete the watcher's consumer,
		// which a reader may not; the server drops it once the
		// connection closes.
	})
	t.Run("reader deletes a platform consumer", func(t *testing.T) {
		expectRefused(t, reader, rv, "$JS.API.CONSUMER.DELETE."+stream+"."+watcher, nil)
		m, err := admin.Request("$JS.API.CONSUMER.INFO."+stream+"."+watcher, nil, 5*time.Second)
		require.NoError(t, err)
		require.NotContains(t, string(m.Data), `"error"`, "the watcher consumer still exists")
	})
	t.Run("reader lists consumers", func(t *testing.T) {
		expectRefused(t, reader, rv, "$JS.API.CONSUMER.NAMES."+stream, nil)
		expectRefused(t, reader, rv, "$JS.API.CONSUMER.LIST."+stream, nil)
	})
	t.Run("reader taps the alerting service's requests", func(t *testing.T) {
		for _, s := range []string{"alerts.fanout", "alerts.silence.add", "alerts.>"} {
			_, err := reader.Subscribe(s, func(*nats.Msg) {})
			require.NoError(t, err)
			require.NoError(t, reader.Flush())
			rv.wait(t, s)
		}
	})

	detector, err := ajs.Stream(ctx, streams.Detector)
	require.NoError(t, err)
	before := detector.CachedInfo().Config
	t.Run("service adds ingest.> to DETECTOR", func(t *testing.T) {
		cfg := before
		cfg.Subjects = append(cfg.Subjects, streams.IngestPrefix+">")
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := sjs.UpdateStream(cctx, cfg)
		require.Error(t, err)
		sv.wait(t, "$JS.API.STREAM.UPDATE."+streams.Detector)
	})
	t.Run("service cuts DETECTOR to one message", func(t *testing.T) {
		cfg := before
		cfg.MaxMsgs = 1
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := sjs.UpdateStream(cctx, cfg)
		require.Error(t, err)
	})
	t.Run("service creates a stream on ingest.>", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := sjs.CreateStream(cctx, jetstream.StreamConfig{Name: "GRAB", Subjects: []string{streams.IngestPrefix + ">"}})
		require.Error(t, err)
		sv.wait(t, "$JS.API.STREAM.CREATE.GRAB")
	})
	info, err := detector.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, before.Subjects, info.Config.Subjects, "DETECTOR subjects unchanged")
	require.Equal(t, before.MaxMsgs, info.Config.MaxMsgs, "DETECTOR limits unchanged")
	_, err = ajs.Stream(ctx, "GRAB")
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)

	t.Run("producer posts to alerts.fanout", func(t *testing.T) {
		got := make(chan *nats.Msg, 1)
		_, err := svc.ChanSubscribe("alerts.fanout", got)
		require.NoError(t, err)
		require.NoError(t, svc.Flush())
		producer, pv := rc.connect(t, auth.RoleProducer)
		require.NoError(t, producer.Publish("alerts.fanout", []byte(`[{"labels":{}}]`)))
		require.NoError(t, producer.Flush())
		pv.wait(t, "alerts.fanout")
		require.NoError(t, svc.Flush())
		select {
		case m := <-got:
			t.Fatalf("alerts.fanout received %q from a producer", m.Data)
		default:
		}
	})
	// The admin may do all of it: the service's streams are provisioned so.
	cfg := before
	cfg.Description = strings.TrimSpace(cfg.Description + " (checked)")
	_, err = ajs.UpdateStream(ctx, cfg)
	require.NoError(t, err, "admin updates a stream")
}
