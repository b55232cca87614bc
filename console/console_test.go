package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// platform is a running 3-node platform with its console.
type platform struct {
	base string // http://host:port/console/api/
	nc   *nats.Conn
	js   jetstream.JetStream
	csrf string
}

func startPlatform(t *testing.T) *platform {
	t.Helper()
	a, err := app.New(app.Options{
		Cluster: cluster.Options{Nodes: 3, DataDir: t.TempDir(), SyncAlways: true,
			ClientPort: clustertest.FreePortRange(t, 3), ClusterPort: clustertest.FreePortRange(t, 3)},
		HTTPAddr: "127.0.0.1:0", HeartbeatInterval: 100 * time.Millisecond, Logger: clustertest.Logger(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("platform did not stop within 60s")
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("platform stopped: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("platform not ready within 90s")
	}
	nc, err := nats.Connect(strings.Join(a.Cluster().ClientURLs(), ","))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p := &platform{base: "http://" + a.HTTPAddr() + "/console/api/", nc: nc, js: js}
	var s struct{ CSRF string }
	p.get(t, "session", &s)
	p.csrf = s.CSRF
	return p
}

// get fetches path and decodes its JSON into v, requiring 200.
func (p *platform) get(t *testing.T, path string, v any) {
	t.Helper()
	code, body := p.do(t, http.MethodGet, path, "", true)
	require.Equal(t, http.StatusOK, code, "GET %s: %s", path, body)
	require.NoError(t, json.Unmarshal([]byte(body), v), "GET %s: %s", path, body)
}

// requireBadRequest checks that GET path is refused with a 400 and the
// API's error body, code bad_request, with a message.
func (p *platform) requireBadRequest(t *testing.T, path string) {
	t.Helper()
	code, body := p.do(t, http.MethodGet, path, "", false)
	require.Equal(t, http.StatusBadRequest, code, "GET %s: %s", path, body)
	var e struct {
		Error struct{ Code, Message string }
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e), "GET %s: %s", path, body)
	require.Equal(t, "bad_request", e.Error.Code, path)
	require.NotEmpty(t, e.Error.Message, path)
}

func (p *platform) do(t *testing.T, method, path, body string, csrf bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	require.NoError(t, err)
	if csrf {
		req.Header.Set("X-CSRF-Token", p.csrf)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually retries cond until it passes or 20s go by.
func eventually(t *testing.T, cond func() error) {
	t.Helper()
	clustertest.Eventually(t, 20*time.Second, cond)
}

// TestConsole checks each endpoint against the source it shows, on one
// running platform.
func TestConsole(t *testing.T) {
	p := startPlatform(t)
	ctx := clustertest.Context(t, 2*time.Minute)

	t.Run("overview matches admin.status", func(t *testing.T) {
		eventually(t, func() error {
			m, err := p.nc.Request(streams.AdminStatusSubject, nil, 5*time.Second)
			if err != nil {
				return err
			}
			var st admin.Status
			if err := json.Unmarshal(m.Data, &st); err != nil {
				return err
			}
			var ov struct {
				MetaLeader string `json:"meta_leader"`
				Ready      bool
				Problems   []string
				Nodes      []admin.Node
				Streams    []struct {
					admin.Stream
					Kind string
				}
			}
			p.get(t, "overview", &ov)
			if ov.MetaLeader != st.MetaLeader || !slices.Equal(ov.Nodes, st.Nodes) {
				return fmt.Errorf("meta leader %q nodes %v, admin.status %q %v", ov.MetaLeader, ov.Nodes, st.MetaLeader, st.Nodes)
			}
			if len(ov.Streams) != len(st.Streams) {
				return fmt.Errorf("%d streams, admin.status %d", len(ov.Streams), len(st.Streams))
			}
			for i, s := range ov.Streams {
				w := st.Streams[i]
				if s.Name != w.Name || s.Leader != w.Leader || s.Replicas != w.Replicas || len(s.Peers) != len(w.Peers) {
					return fmt.Errorf("stream %+v, admin.status %+v", s.Stream, w)
				}
				if want := map[bool]string{true: "kv", false: "stream"}[strings.HasPrefix(s.Name, "KV_")]; s.Kind != want {
					return fmt.Errorf("stream %s kind %q, want %q", s.Name, s.Kind, want)
				}
			}
			if !ov.Ready || len(ov.Problems) != 0 {
				return fmt.Errorf("ready %v problems %v on a healthy platform", ov.Ready, ov.Problems)
			}
			return nil
		})
	})

	t.Run("members match MEMBERS", func(t *testing.T) {
		kv, err := p.js.KeyValue(ctx, streams.BucketMembers)
		require.NoError(t, err)
		eventually(t, func() error {
			want := map[string]membership.Member{}
			lister, err := kv.ListKeys(ctx)
			if err != nil {
				return err
			}
			for k := range lister.Keys() {
				e, err := kv.Get(ctx, k)
				if err != nil {
					return err
				}
				m, err := membership.Decode(k, e.Value())
				if err != nil {
					return err
				}
				want[k] = m
			}
			var page struct {
				Total   int
				Members []membership.Member
			}
			p.get(t, "members?limit=1000&sort=key", &page)
			if page.Total != len(want) || len(page.Members) != len(want) || len(want) == 0 {
				return fmt.Errorf("%d members (total %d), MEMBERS holds %d", len(page.Members), page.Total, len(want))
			}
			for i, m := range page.Members {
				if i > 0 && page.Members[i-1].Key() >= m.Key() {
					return fmt.Errorf("not sorted by key at %d", i)
				}
				w := want[m.Key()]
				if m.State != w.State || !m.LastSeen.Equal(w.LastSeen) || m.Phi != w.Phi {
					return fmt.Errorf("member %s: %+v, MEMBERS %+v", m.Key(), m, w)
				}
			}
			return nil
		})
		var page struct {
			Members []membership.Member
		}
		p.get(t, "members?limit=2&sort=phi&order=desc&state=alive", &page)
		require.Len(t, page.Members, 2)
		require.GreaterOrEqual(t, page.Members[0].Phi, page.Members[1].Phi, "sorted by phi, descending")
		m := page.Members[0]
		var d struct {
			Member          membership.Member
			IntervalsMS     []float64 `json:"intervals_ms"`
			IntervalsSource string    `json:"intervals_source"`
			Transitions     []struct{ State membership.State }
		}
		eventually(t, func() error {
			p.get(t, "members/"+m.Service+"/"+m.Instance, &d)
			if d.IntervalsSource != "detector" || len(d.IntervalsMS) < 2 {
				return fmt.Errorf("intervals %v from %q", d.IntervalsMS, d.IntervalsSource)
			}
			return nil
		})
		require.Equal(t, m.Key(), d.Member.Key())
		require.NotEmpty(t, d.Transitions, "the instance's transitions in DETECTOR")
		require.Equal(t, membership.Alive, d.Transitions[0].State, "first transition")
		sorted := slices.Sorted(slices.Values(d.IntervalsMS))
		require.InDelta(t, 100, sorted[len(sorted)/2], 50, "heartbeats every 100ms: median of %v", d.IntervalsMS)
	})

	t.Run("balancer matches WEIGHTS", func(t *testing.T) {
		kv, err := p.js.KeyValue(ctx, streams.BucketWeights)
		require.NoError(t, err)
		eventually(t, func() error {
			var v struct {
				Instances []struct {
					balancer.Record
					WeightShare float64 `json:"weight_share"`
				}
			}
			p.get(t, "balancer", &v)
			if len(v.Instances) == 0 {
				return fmt.Errorf("no instances")
			}
			shares := map[string]float64{}
			for _, in := range v.Instances {
				e, err := kv.Get(ctx, in.Key())
				if err != nil {
					return fmt.Errorf("WEIGHTS %s: %w", in.Key(), err)
				}
				var rec balancer.Record
				if err := json.Unmarshal(e.Value(), &rec); err != nil {
					return err
				}
				if rec.Weight != in.Weight || rec.Reason != in.Reason || rec.Inputs != in.Inputs {
					return fmt.Errorf("%s: %+v, WEIGHTS %+v", in.Key(), in.Record, rec)
				}
				shares[in.Service] += in.WeightShare
			}
			for svc, s := range shares {
				if s != 0 && (s < 0.999 || s > 1.001) {
					return fmt.Errorf("service %s: weight shares sum to %v", svc, s)
				}
			}
			return nil
		})
	})

	t.Run("alerts match alerts.list and silences round trip", func(t *testing.T) {
		cl := alerting.Client{Conn: p.nc}
		require.NoError(t, post(p.nc, alerting.PostableAlert{Labels: map[string]string{"alertname": "ConsoleTest", "severity": "warning"}}))
		eventually(t, func() error {
			want, err := cl.Alerts(ctx, nil)
			if err != nil {
				return err
			}
			var v struct {
				Alerts []alerting.AlertStatus
				Groups []alerting.Group
			}
			p.get(t, "alerts", &v)
			got := fingerprints(v.Alerts)
			if !slices.Equal(got, fingerprints(want)) || !slices.ContainsFunc(v.Alerts, func(a alerting.AlertStatus) bool { return a.Labels["alertname"] == "ConsoleTest" }) {
				return fmt.Errorf("alerts %v, alerts.list %v", got, fingerprints(want))
			}
			if len(v.Groups) == 0 {
				return fmt.Errorf("no groups")
			}
			return nil
		})
		code, body := p.do(t, http.MethodPost, "silences", `{"matchers":"alertname=\"ConsoleTest\", severity=~\"warn.*\"","duration_ms":3600000,"comment":"console test"}`, true)
		require.Equal(t, http.StatusOK, code, body)
		var made struct{ SilenceID string }
		require.NoError(t, json.Unmarshal([]byte(body), &made))
		kv, err := p.js.KeyValue(ctx, streams.BucketSilences)
		require.NoError(t, err)
		// A direct get may be answered by a replica still applying the put.
		var e jetstream.KeyValueEntry
		eventually(t, func() error {
			e, err = kv.Get(ctx, made.SilenceID)
			if err != nil {
				return fmt.Errorf("the silence is not in KV SILENCES: %w", err)
			}
			return nil
		})
		var sl alerting.Silence
		require.NoError(t, json.Unmarshal(e.Value(), &sl))
		require.Equal(t, "console", sl.CreatedBy)
		require.Len(t, sl.Matchers, 2)
		eventually(t, func() error {
			var v struct{ Alerts []alerting.AlertStatus }
			p.get(t, "alerts", &v)
			for _, a := range v.Alerts {
				if a.Labels["alertname"] == "ConsoleTest" && !slices.Contains(a.Status.SilencedBy, made.SilenceID) {
					return fmt.Errorf("alert not muted yet: %+v", a.Status)
				}
			}
			return nil
		})
		code, body = p.do(t, http.MethodPost, "silences/"+made.SilenceID+"/expire", "", true)
		require.Equal(t, http.StatusOK, code, body)
		sils, err := cl.Silences(ctx)
		require.NoError(t, err)
		i := slices.IndexFunc(sils, func(s alerting.GettableSilence) bool { return s.ID == made.SilenceID })
		require.GreaterOrEqual(t, i, 0)
		require.Equal(t, alerting.SilenceExpired, sils[i].Status.State)
	})

	t.Run("events page both ways over many events", func(t *testing.T) {
		const n = 3000
		for i := range n {
			_, err := p.js.PublishAsync(streams.EventSubject("paging"), fmt.Appendf(nil, `{"i":%d}`, i))
			require.NoError(t, err)
			if i%3 == 0 { // interleave another topic, which the filter skips
				_, err := p.js.PublishAsync(streams.EventSubject("other"), []byte("x"))
				require.NoError(t, err)
			}
		}
		select {
		case <-p.js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("publish did not complete")
		}
		type page struct {
			Events []struct {
				Seq     uint64
				Topic   string
				Preview string
			}
			Prev *struct{ Before uint64 }
			Next *struct{ After uint64 }
		}
		var seen []string
		q := "events?topic=paging&limit=500&after=0"
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			var pg page
			start := time.Now()
			p.get(t, q, &pg)
			require.Less(t, time.Since(start), 2*time.Second, "a page")
			for _, e := range pg.Events {
				require.Equal(t, "paging", e.Topic)
				seen = append(seen, e.Preview)
			}
			if pg.Next == nil {
				break
			}
			q = fmt.Sprintf("events?topic=paging&limit=500&after=%d", pg.Next.After)
		}
		require.Len(t, seen, n, "forward pages")
		for i, s := range seen {
			require.Equal(t, fmt.Sprintf(`{"i":%d}`, i), s)
		}
		seen = seen[:0]
		q = "events?topic=paging&limit=400"
		var last uint64
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			var pg page
			p.get(t, q, &pg)
			for i := len(pg.Events) - 1; i >= 0; i-- {
				seen = append(seen, pg.Events[i].Preview)
			}
			if pages == 0 {
				require.Equal(t, `{"i":2999}`, pg.Events[len(pg.Events)-1].Preview, "the newest page ends with the newest event")
				last = pg.Events[len(pg.Events)-1].Seq
			}
			if pg.Prev == nil {
				break
			}
			q = fmt.Sprintf("events?topic=paging&limit=400&before=%d", pg.Prev.Before)
		}
		require.Len(t, seen, n, "backward pages")
		for i, s := range seen {
			require.Equal(t, fmt.Sprintf(`{"i":%d}`, n-1-i), s)
		}
		var pg page
		p.get(t, "events?topic=paging&q=%22i%22:1234%7D&after=0", &pg)
		require.Len(t, pg.Events, 1, "text filter")
		require.Equal(t, `{"i":1234}`, pg.Events[0].Preview)

		var one struct {
			Encoding, Body string
			StoredHeaders  map[string][]string `json:"stored_headers"`
		}
		p.get(t, fmt.Sprintf("events/%d", last), &one)
		require.Equal(t, "json", one.Encoding)
		require.Equal(t, "{\n  \"i\": 2999\n}", one.Body)
		ack, err := p.js.Publish(ctx, streams.EventSubject("bin"), []byte{0, 1, 2, 0xff})
		require.NoError(t, err)
		p.get(t, fmt.Sprintf("events/%d", ack.Sequence), &one)
		require.Equal(t, "hex", one.Encoding)
		require.Contains(t, one.Body, "00 01 02 ff")
		code, _ := p.do(t, http.MethodGet, fmt.Sprintf("events/%d", ack.Sequence+1000), "", false)
		require.Equal(t, http.StatusNotFound, code)
	})

	t.Run("live tail gets an ingested event within 2s", func(t *testing.T) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"events/tail?topic=tailed", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		require.Equal(t, ": tail of events.tailed", <-lines, "the tail is open")
		sent := time.Now()
		_, err = p.nc.Request("ingest.tailed", []byte(`{"tail":1}`), 5*time.Second)
		require.NoError(t, err)
		deadline := time.After(2 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "tail closed")
				if data, ok := strings.CutPrefix(l, "data: "); ok {
					var e struct{ Topic, Preview string }
					require.NoError(t, json.Unmarshal([]byte(data), &e))
					require.Equal(t, "tailed", e.Topic)
					require.Equal(t, `{"tail":1}`, e.Preview)
					t.Logf("event in the tail %s after the request was sent", time.Since(sent))
					return
				}
			case <-deadline:
				t.Fatal("no event in the tail within 2s")
			}
		}
	})

	t.Run("state keys with revisions, paged", func(t *testing.T) {
		writes := map[string]string{}
		for i := range 25 {
			writes[fmt.Sprintf("console.k%02d", i)] = fmt.Sprintf(`{"n":%d}`, i)
		}
		b, _ := json.Marshal(map[string]any{"writes": writes})
		m, err := p.nc.Request("txn.commit", b, 5*time.Second)
		require.NoError(t, err)
		require.NotContains(t, string(m.Data), "error", string(m.Data))
		// The commit's own answer gives the revision: a direct get may be
		// answered by a replica that has not applied the batch yet.
		var committed struct{ Revisions map[string]uint64 }
		require.NoError(t, json.Unmarshal(m.Data, &committed), string(m.Data))
		rev := committed.Revisions["console.k07"]
		require.NotZero(t, rev, string(m.Data))
		var k struct {
			Revision uint64
			Encoding string
			Value    string
			History  []struct{ Revision uint64 }
		}
		p.get(t, "state?key=console.k07", &k)
		require.Equal(t, rev, k.Revision)
		require.Equal(t, "{\n  \"n\": 7\n}", k.Value)
		require.NotEmpty(t, k.History)
		var keys []string
		q := "state?prefix=console.&limit=10"
		for range 5 {
			var pg struct {
				Entries []struct {
					Key      string
					Revision uint64
				}
				Next *struct{ After string }
			}
			p.get(t, q, &pg)
			for _, e := range pg.Entries {
				keys = append(keys, e.Key)
				if e.Key == "console.k07" {
					require.Equal(t, k.Revision, e.Revision)
				}
			}
			if pg.Next == nil {
				break
			}
			q = "state?prefix=console.&limit=10&after=" + url.QueryEscape(pg.Next.After)
		}
		require.Len(t, keys, 25)
		require.True(t, slices.IsSorted(keys))
		code, _ := p.do(t, http.MethodGet, "state?key=console.missing", "", false)
		require.Equal(t, http.StatusNotFound, code)
	})

	t.Run("series", func(t *testing.T) {
		for i := range 50 {
			_, err := p.nc.Request("ingest.series", fmt.Appendf(nil, `{"i":%d}`, i), 5*time.Second)
			require.NoError(t, err)
		}
		eventually(t, func() error {
			var v struct {
				Times  []int64
				Ingest []float64                           `json:"ingest_per_s"`
				Ack    map[string]struct{ P50 []*float64 } `json:"ack_ms"`
			}
			p.get(t, "series", &v)
			var total float64
			for _, x := range v.Ingest {
				total += x
			}
			if total < 40 {
				return fmt.Errorf("ingest rates sum to %v, want about 50 events", total)
			}
			if !slices.ContainsFunc(v.Ack["quorum"].P50, func(p *float64) bool { return p != nil && *p > 0 }) {
				return fmt.Errorf("no quorum ack latency in %v", v.Ack["quorum"].P50)
			}
			return nil
		})
	})

	t.Run("consumer groups match consume.Status", func(t *testing.T) {
		store, err := txn.NewStore(p.nc, txn.WithLogger(clustertest.Logger()))
		require.NoError(t, err)
		m, err := consume.New(consume.Options{Conn: p.nc, Store: store, Group: "held", Member: "m1",
			TTL: 2 * time.Second, Tick: 100 * time.Millisecond, Logger: clustertest.Logger(),
			Handler: func(*txn.Tx, replicator.Event) error { return errors.New("held back") }})
		require.NoError(t, err)
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(mctx) }()
		defer func() { cancel(); <-done }()
		for i := range 3 {
			_, err := p.js.Publish(ctx, streams.EventsPrefix+"stuck", fmt.Appendf(nil, "%d", i))
			require.NoError(t, err)
		}
		part := consume.Partition("stuck", consume.DefaultPartitions)
		eventually(t, func() error {
			var v struct {
				Groups []consume.GroupStatus
			}
			p.get(t, "groups", &v)
			i := slices.IndexFunc(v.Groups, func(g consume.GroupStatus) bool { return g.Group == "held" })
			if i < 0 {
				return fmt.Errorf("no group held in %+v", v.Groups)
			}
			g := v.Groups[i]
			// The member holds back every event, those of the earlier
			// subtests too: the stuck partition lags, owned by m1.
			if len(g.PerPartition) != consume.DefaultPartitions || g.PerPartition[part].Owner != "m1" || g.PerPartition[part].LagMessages == 0 {
				return fmt.Errorf("group %+v", g)
			}
			want, err := consume.Status(ctx, p.js, store, "held")
			if err != nil {
				return err
			}
			if !slices.Equal(want.Members, g.Members) || want.Partitions != g.Partitions || want.PerPartition[part].Owner != g.PerPartition[part].Owner {
				return fmt.Errorf("console %+v, consume.Status %+v", g, want)
			}
			return nil
		})
		code, _ := p.do(t, http.MethodGet, "groups?group=nosuch", "", false)
		require.Equal(t, http.StatusNotFound, code)
	})

	t.Run("bad input is a 400 with a JSON error", func(t *testing.T) {
		for _, path := range []string{
			"events?limit=0", "events?limit=501", "events?limit=x", "events?after=1&before=2", "events?after=-1",
			"events?topic=a..b", "events?topic=" + strings.Repeat("a", 300), "events?topic=a.%3E.b", "events?topic=a%20b",
			"events?q=" + strings.Repeat("q", 300), "events/x", "events/0", "events/1?index=-1",
			"members?state=zombie", "members?sort=secret", "members?order=up", "members?limit=100000", "members?offset=-1",
			"members?service=a.b", "members/a.b/c", "state", "state?key=a&prefix=b", "state?key=a..b", "state?key=" + strings.Repeat("k", 2000),
			"state?prefix=a*", "series?since=-5", "events/tail?topic=a..b", "groups?group=a.b",
		} {
			p.requireBadRequest(t, path)
		}
		for _, body := range []string{
			``, `{`, `{"matchers":"","duration_ms":3600000,"comment":"c"}`, `{"matchers":"a=~\"(\"","duration_ms":3600000,"comment":"c"}`,
			`{"matchers":"a=\"b\"","duration_ms":1,"comment":"c"}`, `{"matchers":"a=\"b\"","duration_ms":3600000,"comment":""}`,
			`{"matchers":"a=\"b\"","duration_ms":3600000,"comment":"c","extra":1}`,
			`{"matchers":"a=\"b\"","ends_at":"2001-01-01T00:00:00Z","comment":"c"}`,
		} {
			code, resp := p.do(t, http.MethodPost, "silences", body, true)
			require.Equal(t, http.StatusBadRequest, code, "POST %s: %s", body, resp)
		}
		code, _ := p.do(t, http.MethodGet, "silences", "", true)
		require.Equal(t, http.StatusMethodNotAllowed, code)
		code, _ = p.do(t, http.MethodPost, "silences/nope/expire", "", true)
		require.Equal(t, http.StatusNotFound, code, "expire an unknown silence")
	})
}

func post(nc *nats.Conn, a alerting.PostableAlert) error {
	b, _ := json.Marshal([]alerting.PostableAlert{a})
	_, err := nc.Request(streams.AlertsPostSubject, b, 5*time.Second)
	return err
}

func fingerprints(as []alerting.AlertStatus) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Fingerprint
	}
	return out
}
