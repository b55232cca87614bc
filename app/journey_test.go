package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/internal/version"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// The README's user journey, line by line, against NATS servers started
// with nats-server's default options plus JetStream (max_payload 1 MiB, no
// system account), the platform running services only (--nats). Each step
// is named after the README command it stands for and checks the answer
// the README documents.

func TestJourneyOnStockServer(t *testing.T) {
	runJourney(t, clustertest.StartStock(t, 1), nil)
}

func TestJourneyOnStockCluster(t *testing.T) {
	runJourney(t, clustertest.StartStock(t, 3), moreInstances)
}

// moreInstances: platform run --nats nats://host1:4222,nats://host2:4222
// --services replicator,txn runs more instances that share the work.
func moreInstances(t *testing.T, j *journey) {
	t.Run("second process with --services replicator,txn shares the work", func(t *testing.T) {
		second := startApp(t, app.Options{NATS: j.srv.URL(), Services: []string{"replicator", "txn"}, HeartbeatInterval: time.Second})
		defer second.stop()
		clustertest.Eventually(t, 20*time.Second, func() error {
			infos, err := srvInfo(j.nc, "")
			if err != nil {
				return err
			}
			count := map[string]int{}
			for _, in := range infos {
				count[in.Name]++
			}
			want := map[string]int{"platform-admin": 1, "platform-alerting": 1, "platform-balancer": 1, "platform-consume": 1, "platform-detector": 1, "platform-replicator": 2, "platform-txn": 2}
			for name, n := range want {
				if count[name] != n {
					return fmt.Errorf("$SRV.INFO: %d instances of %s, want %d (all: %v)", count[name], name, n, count)
				}
			}
			return nil
		})
		for i := range 20 {
			ack := j.ingestOK(t, "ingest.shared", fmt.Appendf(nil, `{"n":%d}`, i), nil)
			require.Equal(t, streams.Events, ack["stream"])
		}
		served := map[string]int{}
		stats, err := srvStats(j.nc, "platform-replicator")
		require.NoError(t, err)
		for _, s := range stats {
			for _, e := range s.Endpoints {
				served[s.ID] += e.NumRequests
			}
		}
		require.Len(t, served, 2, "both replicator instances answer $SRV.STATS")
	})
}

// journey is the state the steps share.
type journey struct {
	srv     *clustertest.StockCluster
	app     *running
	nc      *nats.Conn
	js      jetstream.JetStream
	nodes   []string // server names
	n       int      // replica count
	version string
}

// runJourney runs every step, then more (if not nil), then stops the
// platform.
func runJourney(t *testing.T, srv *clustertest.StockCluster, more func(*testing.T, *journey)) {
	j := &journey{srv: srv, n: len(srv.Servers), version: version.String()}
	for _, s := range srv.Servers {
		j.nodes = append(j.nodes, s.Name())
	}
	sort.Strings(j.nodes)

	// Subscribed before the platform starts, to see every instance's first
	// and last heartbeat.
	hbConn, _ := connect(t, srv.ClientURLs())
	beats := newBeatLog()
	_, err := hbConn.Subscribe(streams.HeartbeatPrefix+">", beats.add)
	require.NoError(t, err)
	require.NoError(t, hbConn.Flush())

	// platform run --nats URL (every service, default options)
	j.app = startApp(t, app.Options{NATS: srv.URL(), HeartbeatInterval: time.Second})
	require.Nil(t, j.app.app.Cluster(), "--nats starts no server")
	j.nc, j.js = connect(t, srv.ClientURLs())
	require.EqualValues(t, 1<<20, j.nc.MaxPayload(), "a stock server's max_payload")

	t.Run("/readyz /healthz /metrics", func(t *testing.T) { j.http(t) })
	t.Run("nats stream ls", func(t *testing.T) { j.streamLs(t) })
	t.Run("nats kv ls", func(t *testing.T) { j.kvLs(t) })
	t.Run("nats stream info EVENTS", func(t *testing.T) { j.streamInfo(t) })
	t.Run("nats micro ls / info / stats", func(t *testing.T) { j.micro(t) })
	t.Run("nats req admin.status ''", func(t *testing.T) { j.adminStatus(t) })
	t.Run("error body and micro error headers", func(t *testing.T) { j.errorShape(t) })
	t.Run("heartbeats on hb.<service>.<instance>", func(t *testing.T) { j.heartbeats(t, beats) })
	t.Run("ingest, then platform tail", func(t *testing.T) { j.ingest(t) })
	t.Run("ingest errors", func(t *testing.T) { j.ingestErrors(t) })
	t.Run("txn.get, txn.commit, nats kv get STATE", func(t *testing.T) { j.txn(t) })
	t.Run("detector: hb.demo.i1, MEMBERS, detector.>, members.*", func(t *testing.T) { j.detector(t) })
	if more != nil {
		more(t, j)
	}
	t.Run("leaving heartbeat on stop", func(t *testing.T) {
		infos, err := srvInfo(j.nc, "")
		require.NoError(t, err)
		j.app.stop()
		for _, in := range infos {
			clustertest.Eventually(t, 10*time.Second, func() error {
				if !beats.leaving(streams.HeartbeatSubject(in.Name, in.ID)) {
					return fmt.Errorf("no leaving heartbeat from %s %s", in.Name, in.ID)
				}
				return nil
			})
		}
	})
}

func (j *journey) http(t *testing.T) {
	base := "http://" + j.app.app.HTTPAddr()
	code, body := httpGet(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	code, _ = httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	_, metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{"platform_service_requests_total", "go_goroutines"} {
		require.Contains(t, metrics, want)
	}
}

// nats stream ls: EVENTS, DETECTOR, ALERTS and the KV streams.
func (j *journey) streamLs(t *testing.T) {
	ctx := clustertest.Context(t, 10*time.Second)
	var got []string
	names := j.js.StreamNames(ctx)
	for n := range names.Name() {
		got = append(got, n)
	}
	require.NoError(t, names.Err())
	var want []string
	for _, s := range streams.All(j.n) {
		want = append(want, s.Name)
	}
	require.ElementsMatch(t, want, got)
	for _, s := range []string{streams.Events, "DETECTOR", "ALERTS"} {
		require.Contains(t, got, s)
	}
}

// nats kv ls: STATE, MEMBERS, WEIGHTS, SILENCES, LEASES.
func (j *journey) kvLs(t *testing.T) {
	ctx := clustertest.Context(t, 10*time.Second)
	var got []string
	names := j.js.KeyValueStoreNames(ctx)
	for n := range names.Name() {
		got = append(got, n)
	}
	require.ElementsMatch(t, []string{"STATE", "MEMBERS", "WEIGHTS", "SILENCES", "LEASES", "NFLOG"}, got)
}

// nats stream info EVENTS: 3 replicas (1 on a lone server), one leader.
func (j *journey) streamInfo(t *testing.T) {
	ctx := clustertest.Context(t, 10*time.Second)
	s, err := j.js.Stream(ctx, streams.Events)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, j.n, info.Config.Replicas)
	require.NotNil(t, info.Cluster)
	require.Contains(t, j.nodes, info.Cluster.Leader, "EVENTS has a leader among the servers")
	require.Len(t, info.Cluster.Replicas, j.n-1, "followers besides the leader")
}

// nats micro ls: platform-admin, platform-replicator, ... each with the
// binary's version; nats micro info / stats.
func (j *journey) micro(t *testing.T) {
	infos, err := srvInfo(j.nc, "")
	require.NoError(t, err)
	subjects := map[string][]string{}
	for _, in := range infos {
		require.Equal(t, j.version, in.Version, "%s %s: $SRV.INFO version", in.Name, in.ID)
		require.NotEmpty(t, in.ID)
		require.NotEmpty(t, in.Description, in.Name)
		for _, e := range in.Endpoints {
			// Every endpoint is answered on inst.<service>.<instance>.<subject>
			// too, for the balancer's router.
			if svc, inst, sub, err := streams.ParseInstanceSubject(e.Subject); err == nil {
				require.Equal(t, in.Name, svc, e.Subject)
				require.Equal(t, in.ID, inst, e.Subject)
				subjects[in.Name+" by instance"] = append(subjects[in.Name+" by instance"], sub)
				continue
			}
			subjects[in.Name] = append(subjects[in.Name], e.Subject)
		}
	}
	want := map[string][]string{
		"platform-admin":      {streams.AdminStatusSubject},
		"platform-detector":   {"members.list", "members.get", "members.status"},
		"platform-replicator": {"ingest.>"},
		"platform-txn":        {"txn.get", "txn.commit"},
		"platform-alerting": {streams.AlertsPostSubject, streams.AlertsListSubject, streams.AlertsStatusSubject, streams.AlertsReloadSubject,
			streams.AlertsGroupsSubject, streams.AlertsPendingSubject,
			streams.AlertsSilenceAddSubject, streams.AlertsSilenceListSubject, streams.AlertsSilenceExpireSubject},
		"platform-balancer": {"route.>", streams.BalancerStatusSubject, streams.BalancerBalanceSubject},
		"platform-consume": {streams.ConsumeSubject("*", "next"), streams.ConsumeSubject("*", "ack"),
			streams.ConsumeSubject("*", "status"), streams.ConsumeSubject("*", "create")},
	}
	require.Len(t, subjects, 2*len(want), "one instance of each service: %v", subjects)
	for name, subs := range want {
		require.ElementsMatch(t, subs, subjects[name], name)
		require.ElementsMatch(t, subs, subjects[name+" by instance"], name+" by instance")
	}
	pings := pingFor(t, j.nc, len(want))
	require.Len(t, pings, len(want))
	for _, p := range pings {
		require.Equal(t, j.version, p.Version, "%s: $SRV.PING version", p.Name)
	}
	// nats micro stats platform-admin counts what it served.
	_, err = j.nc.Request(streams.AdminStatusSubject, nil, 5*time.Second)
	require.NoError(t, err)
	stats, err := srvStats(j.nc, "platform-admin")
	require.NoError(t, err)
	require.Len(t, stats, 1)
	require.Len(t, stats[0].Endpoints, 2, "admin.status and its instance subject")
	served := map[string]int{}
	for _, e := range stats[0].Endpoints {
		served[e.Subject] = e.NumRequests
	}
	require.Positive(t, served[streams.AdminStatusSubject], "requests to admin.status: %v", served)
}

// nats req admin.status ”: the JSON behind platform status.
func (j *journey) adminStatus(t *testing.T) {
	m, err := j.nc.Request(streams.AdminStatusSubject, []byte(""), 5*time.Second)
	require.NoError(t, err)
	var st admin.Status
	require.NoError(t, json.Unmarshal(m.Data, &st), string(m.Data))
	require.False(t, st.Embedded)
	require.Len(t, st.Streams, len(streams.All(j.n)))
	for _, s := range st.Streams {
		require.Equal(t, j.n, s.Replicas, s.Name)
	}
	// A lone server's stream list carries no leader: admin.status shows
	// none yet (the status command's fix for non-clustered servers).
	var nodes []string
	for _, n := range st.Nodes {
		nodes = append(nodes, n.Name)
		require.True(t, n.Running, n.Name)
	}
	require.Equal(t, j.nodes, nodes, "nodes, learnt from the streams")
	for _, s := range st.Streams {
		require.Contains(t, j.nodes, s.Leader, "stream %s has a leader", s.Name)
	}
	names := map[string]string{}
	for _, in := range st.Services {
		names[in.Name] = in.Version
	}
	for _, svc := range app.ServiceNames() {
		require.Equal(t, j.version, names["platform-"+svc], "platform-%s in admin.status", svc)
	}
}

// {"error":{"code":"bad_request","message":"invalid JSON body: ..."}} with
// Nats-Service-Error and Nats-Service-Error-Code.
func (j *journey) errorShape(t *testing.T) {
	m, err := j.nc.Request(streams.AdminStatusSubject, []byte("{not json"), 5*time.Second)
	require.NoError(t, err)
	var body map[string]map[string]any
	require.NoError(t, json.Unmarshal(m.Data, &body), string(m.Data))
	require.Equal(t, service.CodeBadRequest, body["error"]["code"])
	require.True(t, strings.HasPrefix(body["error"]["message"].(string), "invalid JSON body: "), body["error"]["message"])
	require.Equal(t, "400", m.Header.Get("Nats-Service-Error-Code"))
	require.NotEmpty(t, m.Header.Get("Nats-Service-Error"))
}

// hb.<micro-service-name>.<instance-id> once a second with the load.
func (j *journey) heartbeats(t *testing.T, beats *beatLog) {
	infos, err := srvInfo(j.nc, "")
	require.NoError(t, err)
	for _, in := range infos {
		subject := streams.HeartbeatSubject(in.Name, in.ID)
		clustertest.Eventually(t, 10*time.Second, func() error {
			l, ok := beats.last(subject)
			if !ok || l.Seq < 2 {
				return fmt.Errorf("fewer than 2 heartbeats on %s", subject)
			}
			return nil
		})
		l, _ := beats.last(subject)
		require.EqualValues(t, 1000, l.IntervalMS, subject)
		require.False(t, l.Leaving, subject)
		require.GreaterOrEqual(t, l.CPU, 0.0)
		require.Positive(t, l.Mem, subject)
		require.NoError(t, beats.err(subject))
	}
}

// nats pub/req ingest.orders ..., platform tail events.orders and
// platform tail 'events.>' --all.
func (j *journey) ingest(t *testing.T) {
	ctx := clustertest.Context(t, 60*time.Second)
	events, err := j.js.Stream(ctx, streams.Events)
	require.NoError(t, err)

	// platform tail events.orders: new events only, started first.
	var tailed clustertest.Buffer
	tailDone := make(chan error, 1)
	go func() {
		tailDone <- replicator.Tail(ctx, j.js, "events.orders", &tailed, replicator.TailOptions{Count: 4})
	}()
	clustertest.Eventually(t, 10*time.Second, func() error {
		info, err := events.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Consumers < 1 {
			return errors.New("platform tail has no consumer yet")
		}
		return nil
	})

	// nats pub ingest.orders '{"id":1}': fire and forget, stored at async.
	require.NoError(t, j.nc.Publish("ingest.orders", []byte(`{"id":1}`)))
	clustertest.Eventually(t, 10*time.Second, func() error {
		info, err := events.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.LastSeq != 1 {
			return fmt.Errorf("EVENTS last seq %d, want 1", info.State.LastSeq)
		}
		return nil
	})

	// nats req ingest.orders '{"id":2}': {"stream":"EVENTS","seq":N,"duplicate":false}
	j.ingestExact(t, "ingest.orders", `{"id":2}`, nil, `{"stream":"EVENTS","seq":2,"duplicate":false}`)
	// nats req -H Platform-Consistency:all ingest.orders '{"id":3}'
	j.ingestExact(t, "ingest.orders", `{"id":3}`, nats.Header{"Platform-Consistency": {"all"}}, `{"stream":"EVENTS","seq":3,"duplicate":false}`)
	if j.n > 1 {
		info, err := events.Info(ctx)
		require.NoError(t, err)
		for _, r := range info.Cluster.Replicas {
			require.True(t, r.Current, "level all answered: replica %s is current", r.Name)
		}
	}
	// nats req -H Nats-Msg-Id:order-3 ingest.orders '{"id":3}'; a retry
	// answers "duplicate":true with the same seq.
	id := nats.Header{"Nats-Msg-Id": {"order-3"}}
	j.ingestExact(t, "ingest.orders", `{"id":3}`, id, `{"stream":"EVENTS","seq":4,"duplicate":false}`)
	j.ingestExact(t, "ingest.orders", `{"id":3}`, id, `{"stream":"EVENTS","seq":4,"duplicate":true}`)
	// Platform-Consistency: async answers once accepted, "seq":0.
	j.ingestExact(t, "ingest.audit", `{"who":"alice"}`, nats.Header{"Platform-Consistency": {"async"}, "Trace": {"t1"}},
		`{"stream":"EVENTS","seq":0,"duplicate":false,"consistency":"async"}`)

	// "<seq>[:<index>] <subject> <payload>"
	require.NoError(t, <-tailDone)
	want := "1 events.orders {\"id\":1}\n2 events.orders {\"id\":2}\n3 events.orders {\"id\":3}\n4 events.orders {\"id\":3}\n"
	require.Equal(t, want, tailed.String(), "platform tail events.orders")

	// platform tail 'events.>' --all --count 5 --headers
	var all bytes.Buffer
	require.NoError(t, replicator.Tail(ctx, j.js, "events.>", &all, replicator.TailOptions{All: true, Count: 5, Headers: true}))
	require.Equal(t, want+"5 events.audit Trace=t1 {\"who\":\"alice\"}\n", all.String(), "platform tail 'events.>' --all --headers")
	// platform tail 'events.>' --from 3 --count 1
	var from bytes.Buffer
	require.NoError(t, replicator.Tail(ctx, j.js, "events.>", &from, replicator.TailOptions{From: replicator.Position{Seq: 3}, Count: 1}))
	require.Equal(t, "3 events.orders {\"id\":3}\n", from.String(), "platform tail --from 3")

	// Events of one topic that arrive together share an envelope, and tail
	// prints their "<seq>:<index>".
	const burst = 50
	futures := make([]chan *nats.Msg, burst)
	for i := range futures {
		futures[i] = make(chan *nats.Msg, 1)
		inbox := nats.NewInbox()
		sub, err := j.nc.ChanSubscribe(inbox, futures[i])
		require.NoError(t, err)
		defer sub.Unsubscribe()
		require.NoError(t, j.nc.PublishRequest("ingest.burst", inbox, fmt.Appendf(nil, `{"n":%d}`, i)))
	}
	enveloped := 0
	for i := range burst {
		select {
		case m := <-futures[i]:
			var a map[string]any
			require.NoError(t, json.Unmarshal(m.Data, &a), string(m.Data))
			require.Equal(t, streams.Events, a["stream"], string(m.Data))
			if _, ok := a["index"]; ok {
				enveloped++
			}
		case <-ctx.Done():
			t.Fatalf("no answer to burst event %d", i)
		}
	}
	var burstOut bytes.Buffer
	require.NoError(t, replicator.Tail(ctx, j.js, "events.burst", &burstOut, replicator.TailOptions{All: true, Count: burst}))
	lines := strings.Split(strings.TrimSpace(burstOut.String()), "\n")
	require.Len(t, lines, burst)
	withIndex := 0
	for _, l := range lines {
		if pos, _, _ := strings.Cut(l, " "); strings.Contains(pos, ":") {
			withIndex++
		}
	}
	require.Positive(t, enveloped, "events sent together share an envelope")
	require.Equal(t, enveloped, withIndex, "answers with an index and tail lines with SEQ:INDEX")
	t.Logf("%d of %d burst events shared an envelope", enveloped, burst)
}

// Errors of the replicator: bad_request (invalid subject, empty event,
// unknown level, reserved header), too_large; a refused fire-and-forget
// event is counted in platform_replicator_dropped_events_total{reason}.
func (j *journey) ingestErrors(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		data    []byte
		header  nats.Header
		code    string
	}{
		{"empty event", "ingest.orders", nil, nil, service.CodeBadRequest},
		{"unknown level", "ingest.orders", []byte("x"), nats.Header{"Platform-Consistency": {"most"}}, service.CodeBadRequest},
		{"reserved Content-Encoding", "ingest.orders", []byte("x"), nats.Header{"Content-Encoding": {"s2"}}, service.CodeBadRequest},
		{"reserved Platform-Envelope", "ingest.orders", []byte("x"), nats.Header{"Platform-Envelope": {"1"}}, service.CodeBadRequest},
		{"invalid topic", "ingest.bad!topic", []byte("x"), nil, service.CodeBadRequest},
		// The largest body a stock server carries is 1 MiB with its
		// headers; the ingest limit leaves room for the stored message's.
		{"over the server's limit", "ingest.orders", make([]byte, 1<<20-1024), nil, service.CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := j.nc.RequestMsg(&nats.Msg{Subject: tt.subject, Data: tt.data, Header: tt.header}, 10*time.Second)
			require.NoError(t, err)
			e := service.ParseError(service.JSON, m.Data)
			require.NotNil(t, e, "want %s, got %s", tt.code, m.Data)
			require.Equal(t, tt.code, e.Code, e.Message)
		})
	}
	// An event the server itself cannot carry never reaches the platform:
	// the client refuses to send it.
	_, err := j.nc.Request("ingest.orders", make([]byte, 1<<20+1), time.Second)
	require.ErrorIs(t, err, nats.ErrMaxPayload)

	require.NoError(t, j.nc.Publish("ingest.orders", nil))
	clustertest.Eventually(t, 10*time.Second, func() error {
		_, metrics := httpGet(t, "http://"+j.app.app.HTTPAddr()+"/metrics")
		if !strings.Contains(metrics, `platform_replicator_dropped_events_total{reason="empty"} 1`) {
			return errors.New("dropped empty event not counted yet")
		}
		return nil
	})
}

// nats req txn.get / txn.commit, nats kv get STATE acct.alice, and the
// marker that nats kv ls and get never show.
func (j *journey) txn(t *testing.T) {
	ctx := clustertest.Context(t, 30*time.Second)
	kv, err := j.js.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	rev, err := kv.Put(ctx, "acct.alice", []byte("100")) // nats kv put STATE acct.alice 100
	require.NoError(t, err)

	// nats req txn.get '{"keys":["acct.alice","acct.bob"]}'
	// {"values":{"acct.alice":{"value":"100","revision":7},"acct.bob":null}}
	get := j.reqOK(t, "txn.get", `{"keys":["acct.alice","acct.bob"]}`, nil)
	require.JSONEq(t, fmt.Sprintf(`{"values":{"acct.alice":{"value":"100","revision":%d},"acct.bob":null}}`, rev), string(get.Data))

	// The same in msgpack.
	mp := nats.Header{service.ContentTypeHeader: {service.ContentTypeMsgpack}}
	body, err := service.Msgpack.Encode(map[string]any{"keys": []string{"acct.alice"}})
	require.NoError(t, err)
	m, err := j.nc.RequestMsg(&nats.Msg{Subject: "txn.get", Data: body, Header: mp}, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, service.ContentTypeMsgpack, m.Header.Get(service.ContentTypeHeader))
	var got struct {
		Values map[string]struct {
			Value    string `msgpack:"value"`
			Revision uint64 `msgpack:"revision"`
		} `msgpack:"values"`
	}
	require.NoError(t, service.Msgpack.Decode(m.Data, &got))
	require.Equal(t, "100", got.Values["acct.alice"].Value)
	require.Equal(t, rev, got.Values["acct.alice"].Revision)

	// nats req txn.commit '{"reads":{"acct.alice":7,"acct.bob":0},"writes":{...},"deletes":[]}'
	// {"committed":true,"revisions":{"acct.alice":9,"acct.bob":10}}
	commit := j.reqOK(t, "txn.commit", fmt.Sprintf(`{"reads":{"acct.alice":%d,"acct.bob":0},"writes":{"acct.alice":"90","acct.bob":"10"},"deletes":[]}`, rev), nil)
	var res struct {
		Committed bool              `json:"committed"`
		Revisions map[string]uint64 `json:"revisions"`
	}
	require.NoError(t, json.Unmarshal(commit.Data, &res), string(commit.Data))
	require.True(t, res.Committed, string(commit.Data))
	require.Len(t, res.Revisions, 2, string(commit.Data))

	// nats kv get STATE acct.alice prints the value written. KV reads go
	// direct to any replica (allow_direct, as nats.go and the CLI read
	// buckets), so on three nodes a follower may answer a moment before
	// it holds the commit; txn.get is the read that is never stale. Wait
	// for the replicas, then every value and revision must match.
	for key, want := range map[string]string{"acct.alice": "90", "acct.bob": "10"} {
		clustertest.Eventually(t, 5*time.Second, func() error {
			e, err := kv.Get(ctx, key)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if string(e.Value()) != want || e.Revision() != res.Revisions[key] {
				return fmt.Errorf("%s = %q at revision %d, want %q at %d", key, e.Value(), e.Revision(), want, res.Revisions[key])
			}
			return nil
		})
	}

	// or {"error":{"code":"conflict","message":"…","key":"acct.alice","expected":7,"actual":8}}
	stale := j.request(t, "txn.commit", fmt.Sprintf(`{"reads":{"acct.alice":%d},"writes":{"acct.alice":"80"},"deletes":[]}`, rev), nil)
	e := service.ParseError(service.JSON, stale.Data)
	require.NotNil(t, e, string(stale.Data))
	require.Equal(t, service.CodeConflict, e.Code, e.Message)
	require.Equal(t, "acct.alice", e.Fields["key"])
	require.EqualValues(t, rev, e.Fields["expected"])
	require.EqualValues(t, res.Revisions["acct.alice"], e.Fields["actual"])
	require.Equal(t, "409", stale.Header.Get("Nats-Service-Error-Code"))

	// A key only read is checked by the marker _txn.marker: nats kv watch
	// STATE shows it as a delete, nats kv ls and nats kv get never show it.
	w, err := kv.Watch(ctx, "_txn.marker", jetstream.UpdatesOnly())
	require.NoError(t, err)
	defer w.Stop()
	j.reqOK(t, "txn.commit", fmt.Sprintf(`{"reads":{"acct.bob":%d},"writes":{"acct.carol":"1"},"deletes":[]}`, res.Revisions["acct.bob"]), nil)
	select {
	case u := <-w.Updates():
		require.NotNil(t, u)
		require.Equal(t, jetstream.KeyValueDelete, u.Operation(), "the marker watched")
	case <-ctx.Done():
		t.Fatal("the marker never showed in nats kv watch STATE")
	}
	// nats kv ls reads through a consumer that, on three nodes, may sit
	// on a replica a moment behind the commit: wait for it, as for get.
	clustertest.Eventually(t, 5*time.Second, func() error {
		keys, err := kv.Keys(ctx)
		if err != nil {
			return err
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"acct.alice", "acct.bob", "acct.carol"}) {
			return fmt.Errorf("nats kv ls STATE: %v, want acct.alice, acct.bob and acct.carol only", keys)
		}
		return nil
	})
	_, err = kv.Get(ctx, "_txn.marker")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "nats kv get STATE _txn.marker")

	// bad_request: malformed.
	bad := j.request(t, "txn.commit", `{"reads":`, nil)
	e = service.ParseError(service.JSON, bad.Data)
	require.NotNil(t, e, string(bad.Data))
	require.Equal(t, service.CodeBadRequest, e.Code)
}

// nats pub hb.demo.i1 '{}' --count 20 --sleep 100ms, then:
// nats kv get MEMBERS demo.i1 (suspect, then dead), nats sub 'detector.>',
// nats req members.list '{"service":"demo"}', nats req members.status ”.
func (j *journey) detector(t *testing.T) {
	ctx := clustertest.Context(t, 60*time.Second)
	transitions := make(chan *nats.Msg, 64)
	sub, err := j.nc.ChanSubscribe(streams.DetectorPrefix+">", transitions)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	members, err := j.js.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	w, err := members.Watch(ctx, "demo.i1")
	require.NoError(t, err)
	defer w.Stop()
	require.NoError(t, j.nc.Flush())

	for range 20 {
		require.NoError(t, j.nc.Publish("hb.demo.i1", []byte("{}")))
		time.Sleep(100 * time.Millisecond) // the README's --sleep 100ms: the pace the detector learns
	}
	last := time.Now()

	// MEMBERS demo.i1 goes suspect, then dead.
	var states []membership.State
	var dead membership.Member
	for dead.State != membership.Dead {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			var m membership.Member
			require.NoError(t, json.Unmarshal(e.Value(), &m), string(e.Value()))
			require.Equal(t, "demo", m.Service)
			require.Equal(t, "i1", m.Instance)
			if len(states) == 0 || states[len(states)-1] != m.State {
				states = append(states, m.State)
			}
			dead = m
		case <-ctx.Done():
			t.Fatalf("demo.i1 not dead; states in MEMBERS: %v", states)
		}
	}
	t.Logf("MEMBERS demo.i1: %v, dead %s after the last beat", states, time.Since(last).Round(10*time.Millisecond))
	require.Equal(t, membership.Alive, states[0], "states %v", states)
	require.Contains(t, states, membership.Suspect, "suspect before dead: %v", states)

	// nats sub 'detector.>': detector.<state>.demo.i1 for every change.
	var seen []string
	for !slices.Contains(seen, "detector.dead.demo.i1") {
		select {
		case m := <-transitions:
			var tr membership.Transition
			require.NoError(t, json.Unmarshal(m.Data, &tr), string(m.Data))
			if tr.Service != "demo" {
				continue
			}
			require.Equal(t, streams.DetectorSubject(string(tr.State), "demo", "i1"), m.Subject)
			require.False(t, tr.At.IsZero())
			seen = append(seen, m.Subject)
		case <-ctx.Done():
			t.Fatalf("no detector.dead.demo.i1; saw %v", seen)
		}
	}
	require.Equal(t, "detector.alive.demo.i1", seen[0], "transitions %v", seen)
	require.Contains(t, seen, "detector.suspect.demo.i1", "transitions %v", seen)

	// nats req members.list '{"service":"demo"}'
	list := j.reqOK(t, "members.list", `{"service":"demo"}`, nil)
	var view struct {
		Members   []membership.Member `json:"members"`
		Count     int                 `json:"count"`
		Truncated bool                `json:"truncated"`
	}
	require.NoError(t, json.Unmarshal(list.Data, &view), string(list.Data))
	require.Equal(t, 1, view.Count, string(list.Data))
	require.Len(t, view.Members, 1)
	require.Equal(t, membership.Dead, view.Members[0].State)
	require.Equal(t, "i1", view.Members[0].Instance)

	// nats req members.status ''
	status := j.reqOK(t, "members.status", ``, nil)
	var st struct {
		ID      string                   `json:"id"`
		Active  bool                     `json:"active"`
		Members map[membership.State]int `json:"members"`
		Model   map[string]any           `json:"model"`
	}
	require.NoError(t, json.Unmarshal(status.Data, &st), string(status.Data))
	require.True(t, st.Active, "the only detector is active: %s", status.Data)
	require.NotEmpty(t, st.ID)
	require.GreaterOrEqual(t, st.Members[membership.Dead], 1, string(status.Data))
	require.GreaterOrEqual(t, st.Members[membership.Alive], len(app.ServiceNames()), "the platform's own instances: %s", status.Data)
	require.NotNil(t, st.Model, string(status.Data))
}

// request sends a request and returns the answer, whatever it is.
func (j *journey) request(t *testing.T, subject, body string, h nats.Header) *nats.Msg {
	t.Helper()
	m, err := j.nc.RequestMsg(&nats.Msg{Subject: subject, Data: []byte(body), Header: h}, 10*time.Second)
	require.NoError(t, err, subject)
	return m
}

// reqOK sends a request and fails the test on an error answer.
func (j *journey) reqOK(t *testing.T, subject, body string, h nats.Header) *nats.Msg {
	t.Helper()
	m := j.request(t, subject, body, h)
	if e := service.ParseError(service.JSON, m.Data); e != nil {
		t.Fatalf("%s %s: %s: %s", subject, body, e.Code, e.Message)
	}
	return m
}

// ingestExact checks an ingest answer against the documented JSON.
func (j *journey) ingestExact(t *testing.T, subject, body string, h nats.Header, want string) {
	t.Helper()
	m := j.reqOK(t, subject, body, h)
	require.JSONEq(t, want, string(m.Data), "nats req %v %s %s", h, subject, body)
}

func (j *journey) ingestOK(t *testing.T, subject string, body []byte, h nats.Header) map[string]any {
	t.Helper()
	m := j.reqOK(t, subject, string(body), h)
	var a map[string]any
	require.NoError(t, json.Unmarshal(m.Data, &a), string(m.Data))
	return a
}

// srvInfo collects the $SRV.INFO answers (of one service, or all) as
// nats micro ls does.
func srvInfo(nc *nats.Conn, name string) ([]micro.Info, error) {
	var out []micro.Info
	err := collect(nc, "$SRV.INFO", name, func(data []byte) error {
		var in micro.Info
		if err := json.Unmarshal(data, &in); err != nil {
			return err
		}
		out = append(out, in)
		return nil
	})
	return out, err
}

// srvStats collects the $SRV.STATS answers of a service, as nats micro
// stats does.
func srvStats(nc *nats.Conn, name string) ([]micro.Stats, error) {
	var out []micro.Stats
	err := collect(nc, "$SRV.STATS", name, func(data []byte) error {
		var s micro.Stats
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// collect sends a $SRV request and decodes the answers that arrive within
// half a second of the last one.
func collect(nc *nats.Conn, verb, name string, decode func([]byte) error) error {
	subject := verb
	if name != "" {
		subject += "." + name
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return err
	}
	for {
		m, err := sub.NextMsg(500 * time.Millisecond)
		if errors.Is(err, nats.ErrTimeout) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := decode(m.Data); err != nil {
			return fmt.Errorf("%s answer %q: %w", subject, m.Data, err)
		}
	}
}

// beatLog keeps the heartbeats seen per subject.
type beatLog struct {
	mu    sync.Mutex
	lastL map[string]service.Load
	bad   map[string]error
	left  map[string]bool
}

func newBeatLog() *beatLog {
	return &beatLog{lastL: map[string]service.Load{}, bad: map[string]error{}, left: map[string]bool{}}
}

func (b *beatLog) add(m *nats.Msg) {
	var l service.Load
	err := json.Unmarshal(m.Data, &l)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.bad[m.Subject] = fmt.Errorf("heartbeat %q: %w", m.Data, err)
		return
	}
	if prev, ok := b.lastL[m.Subject]; ok && l.Seq <= prev.Seq {
		b.bad[m.Subject] = fmt.Errorf("heartbeat seq %d after %d", l.Seq, prev.Seq)
	}
	b.lastL[m.Subject] = l
	if l.Leaving {
		b.left[m.Subject] = true
	}
}

func (b *beatLog) last(subject string) (service.Load, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.lastL[subject]
	return l, ok
}

func (b *beatLog) err(subject string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bad[subject]
}

func (b *beatLog) leaving(subject string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left[subject]
}
