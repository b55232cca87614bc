package replicator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// startIngest runs an ingest service on its own connection until the test
// ends.
func startIngest(t testing.TB, e *env, opts Options) (*Service, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Conn = clustertest.Connect(t, e.c)
	opts.Logger = clustertest.Logger()
	opts.Registerer = reg
	s, err := New(opts)
	require.NoError(t, err)
	runIngest(t, s)
	return s, reg
}

// runIngest runs s until the test ends and waits until it is ready.
func runIngest(t testing.TB, s *Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("ingest service stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("ingest service not ready")
	}
}

func request(t *testing.T, nc *nats.Conn, subject string, data []byte, h nats.Header) (IngestAck, *service.Error) {
	t.Helper()
	ctx := clustertest.Context(t, 10*time.Second)
	m, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data, Header: h})
	require.NoError(t, err)
	if e := service.ParseError(service.JSON, m.Data); e != nil {
		return IngestAck{}, e
	}
	var a IngestAck
	require.NoError(t, json.Unmarshal(m.Data, &a), "answer %s", m.Data)
	return a, nil
}

func TestIngest(t *testing.T) {
	e := newEnv(t, 1)
	for _, perEvent := range []bool{false, true} {
		t.Run(fmt.Sprintf("per event %t", perEvent), func(t *testing.T) {
			startIngest(t, e, Options{PerEvent: perEvent})
			nc := clustertest.Connect(t, e.c)
			topic := fmt.Sprintf("orders%t", perEvent)

			a, serr := request(t, nc, "ingest."+topic, []byte(`{"id":2}`), nil)
			require.Nil(t, serr)
			require.Equal(t, "EVENTS", a.Stream)
			require.NotZero(t, a.Seq)
			require.False(t, a.Duplicate)
			ev, err := Get(clustertest.Context(t, 5*time.Second), nc, "EVENTS", Position{Seq: a.Seq}, Strong)
			require.NoError(t, err)
			require.Equal(t, "events."+topic, ev.Subject)
			require.Equal(t, `{"id":2}`, string(ev.Data))

			for _, level := range []string{"async", "quorum", "all", "QUORUM"} {
				a, serr := request(t, nc, "ingest."+topic+".lvl", []byte(level), nats.Header{streams.ConsistencyHeader: {level}})
				require.Nil(t, serr, level)
				if level == "async" {
					require.Equal(t, "async", a.Consistency)
				} else {
					require.NotZero(t, a.Seq, level)
				}
			}

			// Fire and forget is stored too.
			require.NoError(t, nc.Publish("ingest."+topic+".ff", []byte(`{"id":1}`)))
			evs := readAll(t, e.js, 1, WithFilter("events."+topic+".ff"))
			require.Equal(t, `{"id":1}`, string(evs[0].Data))

			// An event is opaque: any Content-Type is stored as sent.
			a, serr = request(t, nc, "ingest."+topic+".bin", []byte{0, 1, 2}, nats.Header{"Content-Type": {"application/octet-stream"}})
			require.Nil(t, serr, "octet-stream event")
			pos := Position{Seq: a.Seq}
			if a.Index != nil {
				pos.Index = *a.Index
			}
			ev, err = Get(clustertest.Context(t, 5*time.Second), nc, "EVENTS", pos, Strong)
			require.NoError(t, err)
			require.Equal(t, []byte{0, 1, 2}, ev.Data)

			// A producer's Nats-Msg-Id deduplicates.
			h := nats.Header{"Nats-Msg-Id": {"order-7-" + topic}}
			a1, serr := request(t, nc, "ingest."+topic, []byte(`{"id":7}`), h)
			require.Nil(t, serr)
			a2, serr := request(t, nc, "ingest."+topic, []byte(`{"id":7}`), h)
			require.Nil(t, serr)
			require.True(t, a2.Duplicate, "second publish with the same id: %+v then %+v", a1, a2)
			require.Equal(t, a1.Seq, a2.Seq)
		})
	}
}

func TestIngestGroupCommit(t *testing.T) {
	e := newEnv(t, 1)
	_, reg := startIngest(t, e, Options{MaxInFlight: 1})
	nc := clustertest.Connect(t, e.c)
	const n = 200
	replies := make(chan *nats.Msg, n)
	sub, err := nc.ChanSubscribe(nats.NewInbox()+".*", replies)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	prefix := sub.Subject[:len(sub.Subject)-1]
	for i := range n {
		require.NoError(t, nc.PublishMsg(&nats.Msg{Subject: "ingest.gc", Reply: prefix + fmt.Sprint(i), Data: fmt.Appendf(nil, `{"n":%d}`, i)}))
	}
	seqs := map[uint64]int{}
	for range n {
		select {
		case m := <-replies:
			var a IngestAck
			require.NoError(t, json.Unmarshal(m.Data, &a), "%s", m.Data)
			require.NotZero(t, a.Seq, "%s", m.Data)
			seqs[a.Seq]++
		case <-time.After(10 * time.Second):
			t.Fatal("not every request was answered")
		}
	}
	// Group commit: 200 requests published together are stored in a few
	// envelopes, counted through the stream; a loaded machine may split
	// them over more batches, never over one message each.
	si, err := e.js.Stream(clustertest.Context(t, 5*time.Second), streams.Events)
	require.NoError(t, err)
	info, err := si.Info(clustertest.Context(t, 5*time.Second), jetstream.WithSubjectFilter("events.gc"))
	require.NoError(t, err)
	stored := info.State.Subjects["events.gc"]
	if stored > n/10 {
		t.Fatalf("%d concurrent requests stored in %d stream messages, want at most %d", n, stored, n/10)
	}
	require.Equal(t, int(stored), len(seqs), "each stream message answers the requests it holds")
	evs := readAll(t, e.js, n, WithFilter("events.gc"))
	got := map[string]bool{}
	for _, ev := range evs {
		got[string(ev.Data)] = true
	}
	require.Len(t, got, n)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, name := range []string{"platform_replicator_events_in_total", "platform_replicator_batches_out_total",
		"platform_replicator_batch_size_events", "platform_replicator_ack_latency_seconds"} {
		require.True(t, names[name], "metric %s reported", name)
	}
}

func TestIngestBadInput(t *testing.T) {
	e := newEnv(t, 1)
	_, reg := startIngest(t, e, Options{MaxEventBytes: 1024})
	nc := clustertest.Connect(t, e.c)
	for _, tc := range []struct {
		name    string
		subject string
		data    []byte
		header  nats.Header
		code    string
	}{
		{"oversize event", "ingest.x", make([]byte, 2048), nil, service.CodeTooLarge},
		{"empty event", "ingest.x", nil, nil, service.CodeBadRequest},
		{"invalid token character", "ingest.or$ders", []byte("{}"), nil, service.CodeBadRequest},
		{"token too long", "ingest." + strings.Repeat("a", streams.MaxTokenBytes+1), []byte("{}"), nil, service.CodeBadRequest},
		{"too many tokens", "ingest." + strings.Repeat("a.", 16) + "a", []byte("{}"), nil, service.CodeBadRequest},
		{"unknown consistency level", "ingest.x", []byte("{}"), nats.Header{streams.ConsistencyHeader: {"eventual"}}, service.CodeBadRequest},
		{"reserved header", "ingest.x", []byte("{}"), nats.Header{"Content-Encoding": {"gzip"}}, service.CodeBadRequest},
		{"envelope header", "ingest.x", []byte("{}"), nats.Header{streams.EnvelopeHeader: {"1"}}, service.CodeBadRequest},
		// JetStream answered these with an internal error (rollup: 10111)
		// or acted on them with the replicator's rights.
		{"rollup header", "ingest.x", []byte("{}"), nats.Header{"Nats-Rollup": {"sub"}}, service.CodeBadRequest},
		{"rollup header in lower case", "ingest.x", []byte("{}"), nats.Header{"nats-rollup": {"all"}}, service.CodeBadRequest},
		{"ttl header", "ingest.x", []byte("{}"), nats.Header{"Nats-TTL": {"1s"}}, service.CodeBadRequest},
		{"batch header", "ingest.x", []byte("{}"), nats.Header{"Nats-Batch-Id": {"b"}, "Nats-Batch-Sequence": {"1"}}, service.CodeBadRequest},
		{"trace header", "ingest.x", []byte("{}"), nats.Header{"Nats-Trace-Dest": {"trace.me"}}, service.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, serr := request(t, nc, tc.subject, tc.data, tc.header)
			require.NotNil(t, serr, "want a %s error", tc.code)
			require.Equal(t, tc.code, serr.Code, serr.Message)
			require.NotEmpty(t, serr.Message)
		})
	}
	// The service keeps running and counts what it refused.
	a, serr := request(t, nc, "ingest.x", []byte("{}"), nil)
	require.Nil(t, serr)
	require.NotZero(t, a.Seq)
	// The directives a producer may set still pass.
	a, serr = request(t, nc, "ingest.x", []byte("{}"), nats.Header{"Nats-Msg-Id": {"bad-input-1"}, "Nats-Expected-Stream": {streams.Events}})
	require.Nil(t, serr)
	require.NotZero(t, a.Seq)
	require.Equal(t, 7.0, counterValue(t, reg, "platform_replicator_errors_total", "reserved_header"))
	require.NoError(t, nc.Publish("ingest.bad$topic", []byte("{}")))
	clustertest.Eventually(t, 5*time.Second, func() error {
		if v := counterValue(t, reg, "platform_replicator_dropped_events_total", "invalid_subject"); v != 1 {
			return fmt.Errorf("dropped invalid_subject = %v", v)
		}
		return nil
	})
	require.Equal(t, 1.0, counterValue(t, reg, "platform_replicator_errors_total", "unknown_level"))
}

// counterValue returns the counter name{reason=reason} from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestIngestRateLimit(t *testing.T) {
	e := newEnv(t, 1)
	_, reg := startIngest(t, e, Options{ClientRate: 1, ClientBurst: 3, TopicRate: 1, TopicBurst: 5})
	nc := clustertest.Connect(t, e.c)
	other := clustertest.Connect(t, e.c)

	// Per client: the connection's burst of 3 passes, the 4th is refused
	// with a retry hint; another connection still gets through.
	for i := range 3 {
		_, serr := request(t, nc, "ingest.rl.a", []byte("{}"), nil)
		require.Nil(t, serr, "request %d", i)
	}
	_, serr := request(t, nc, "ingest.rl.a", []byte("{}"), nil)
	require.NotNil(t, serr)
	require.Equal(t, service.CodeRateLimited, serr.Code)
	retry, ok := serr.Fields["retry_after_ms"].(float64)
	require.True(t, ok, "retry_after_ms in %v", serr.Fields)
	require.Greater(t, retry, 0.0)
	require.LessOrEqual(t, retry, 1000.0)
	_, serr = request(t, other, "ingest.rl.a", []byte("{}"), nil)
	require.Nil(t, serr, "another client is not limited")

	// A Platform-Client header names the client instead of the connection.
	for i := range 3 {
		_, serr := request(t, nc, "ingest.rl.b", []byte("{}"), nats.Header{streams.ClientHeader: {"c2"}})
		require.Nil(t, serr, "named client request %d", i)
	}
	_, serr = request(t, other, "ingest.rl.b", []byte("{}"), nats.Header{streams.ClientHeader: {"c2"}})
	require.NotNil(t, serr, "the named client's bucket is shared across connections")
	require.Equal(t, service.CodeRateLimited, serr.Code)

	// Per topic: rl.a has used 4 of its 5; the next from a fresh client
	// passes and then the topic is exhausted for everyone.
	_, serr = request(t, other, "ingest.rl.a", []byte("{}"), nats.Header{streams.ClientHeader: {"c3"}})
	require.Nil(t, serr)
	_, serr = request(t, other, "ingest.rl.a", []byte("{}"), nats.Header{streams.ClientHeader: {"c4"}})
	require.NotNil(t, serr)
	require.Equal(t, service.CodeRateLimited, serr.Code)

	// A fire-and-forget event over the limit is counted as dropped.
	require.NoError(t, other.PublishMsg(&nats.Msg{Subject: "ingest.rl.a", Data: []byte("{}"), Header: nats.Header{streams.ClientHeader: {"c5"}}}))
	clustertest.Eventually(t, 5*time.Second, func() error {
		if v := counterValue(t, reg, "platform_replicator_dropped_events_total", "rate_limited"); v != 1 {
			return fmt.Errorf("dropped rate_limited = %v", v)
		}
		return nil
	})
	require.GreaterOrEqual(t, counterValue(t, reg, "platform_replicator_errors_total", "rate_limited"), 3.0)
}

// TestIngestTopics: the topics the ingest service takes, as streams
// checks them for it.
func TestIngestTopics(t *testing.T) {
	long := string(bytes.Repeat([]byte("a"), streams.MaxTokenBytes+1))
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"orders", true},
		{"orders.eu-west_1", true},
		{"a:b=c@d~e", true},
		{"", false},
		{"orders..x", false},
		{"orders.", false},
		{"orders.*", false},
		{"orders.>", false},
		{"orders$", false},
		{"ordérs", false},
		{long, false},
		{"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q", false},
	} {
		t.Run(fmt.Sprintf("%q", tc.topic), func(t *testing.T) {
			topic, err := streams.IngestTopic(streams.IngestSubject(tc.topic))
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, tc.topic, topic)
			} else {
				require.ErrorIs(t, err, streams.ErrBadSubject)
			}
		})
	}
}

// TestUnavailableSaysWhenToRetry: every unavailable answer carries
// retry_after_ms, as the README promises.
func TestUnavailableSaysWhenToRetry(t *testing.T) {
	for _, err := range []error{
		ErrBufferFull,
		ErrClosed,
		ErrDeadline,
		fmt.Errorf("publish: %w", &jetstream.APIError{Code: 400, ErrorCode: 10023, Description: "insufficient resources"}),
	} {
		e := publishError(err)
		if e.Code != service.CodeUnavailable {
			t.Errorf("%v: code %s, want unavailable", err, e.Code)
			continue
		}
		if ms, ok := e.Fields["retry_after_ms"].(int); !ok || ms <= 0 {
			t.Errorf("%v: retry_after_ms = %v, want a positive number", err, e.Fields["retry_after_ms"])
		}
	}
}
