package consume

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// startService runs a consume service instance on its own connection.
func (e *groupEnv) startService(t *testing.T, reg prometheus.Registerer) *Service {
	t.Helper()
	nc := clustertest.Connect(t, e.c)
	s, err := NewService(ServiceOptions{
		Conn: nc, TTL: 2 * time.Second, Tick: 100 * time.Millisecond,
		HeartbeatInterval: -1, Logger: clustertest.Logger(), Registerer: reg,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("consume service did not stop")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("consume service stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("consume service not ready")
	}
	// Its subscriptions reach the other nodes of the cluster a moment
	// after it is ready on its own.
	clustertest.Eventually(t, 10*time.Second, func() error {
		_, err := e.nc.Request(streams.InstanceSubject(s.svc.MicroName(), s.svc.ID(), streams.ConsumeSubject("probe", "status")), nil, time.Second)
		return err
	})
	return s
}

// ask sends body to subject and returns the answer's error code ("" for
// none) and body.
func ask(t *testing.T, nc *nats.Conn, subject, body string) (string, []byte) {
	t.Helper()
	resp, err := nc.Request(subject, []byte(body), 40*time.Second)
	require.NoError(t, err, "%s: no answer", subject)
	if e := service.ParseError(service.JSON, resp.Data); e != nil {
		return e.Code, resp.Data
	}
	return "", resp.Data
}

// nextVia asks subject for events until n came.
func nextVia(t *testing.T, nc *nats.Conn, subject string, n int) []WireEvent {
	t.Helper()
	var got []WireEvent
	clustertest.Eventually(t, 30*time.Second, func() error {
		code, body := ask(t, nc, subject, fmt.Sprintf(`{"max":%d,"wait_ms":300}`, n-len(got)))
		if code != "" {
			return fmt.Errorf("%s: %s", subject, body)
		}
		var r NextResponse
		require.NoError(t, json.Unmarshal(body, &r))
		got = append(got, r.Events...)
		if len(got) < n {
			return fmt.Errorf("%d of %d events", len(got), n)
		}
		return nil
	})
	return got
}

// TestServiceConsumesAndSettles drives the consume service as a client in
// any language would: create a group, take decoded events (text as is,
// binary in base64), settle them by token with per-token results, read
// the status; a token handed out by another instance is settled there.
func TestServiceConsumesAndSettles(t *testing.T) {
	e := newGroupEnv(t)
	a := e.startService(t, nil)
	nc := e.nc

	code, body := ask(t, nc, streams.ConsumeSubject("nosuch", "next"), `{"max":1}`)
	require.Equal(t, service.CodeNotFound, code, "next of an unknown group: %s", body)
	require.Contains(t, string(body), "consume.nosuch.create")
	code, _ = ask(t, nc, streams.ConsumeSubject("nosuch", "status"), ``)
	require.Equal(t, service.CodeNotFound, code)

	code, body = ask(t, nc, streams.ConsumeSubject("svc", "create"), `{"filter":["events.s.>"],"partitions":2,"max_deliver":2}`)
	require.Empty(t, code, "%s", body)
	require.JSONEq(t, `{"group":"svc","partitions":2,"filter":["events.s.>"],"max_deliver":2,"ack_wait_ms":30000}`, string(body))
	code, _ = ask(t, nc, streams.ConsumeSubject("svc", "create"), `{"filter":["events.s.>"],"partitions":2,"max_deliver":2}`)
	require.Empty(t, code, "creating the same group again")
	code, body = ask(t, nc, streams.ConsumeSubject("svc", "create"), `{"filter":["events.s.>"],"partitions":3}`)
	require.Equal(t, service.CodeConflict, code, "another partition count: %s", body)

	ctx := clustertest.Context(t, 30*time.Second)
	// One envelope: a partition's events are handed out to one caller at
	// a time, so the three must be read together to come out together.
	pub, err := replicator.NewPublisher(e.js, replicator.WithEnvelope(), replicator.WithBatch(64, 1<<20))
	require.NoError(t, err)
	var futs []*replicator.Future
	for _, d := range []string{`{"n":1}`, "\xff\x00bin", "three"} {
		f, err := pub.PublishAsync(ctx, replicator.Message{Subject: "events.s.a", Data: []byte(d), Header: nats.Header{"Trace": {"t1"}}})
		require.NoError(t, err)
		futs = append(futs, f)
	}
	require.NoError(t, pub.Flush(ctx))
	for _, f := range futs {
		_, err := f.Wait(ctx)
		require.NoError(t, err)
	}
	require.NoError(t, pub.Close(ctx))
	_, err = e.js.Publish(ctx, "events.other", []byte("not mine"))
	require.NoError(t, err)
	evs := nextVia(t, nc, streams.ConsumeSubject("svc", "next"), 3)
	if evs[0].Data == nil || *evs[0].Data != `{"n":1}` || evs[0].Subject != "events.s.a" || evs[0].Headers["Trace"][0] != "t1" || evs[0].Attempt != 1 {
		t.Errorf("first event %+v, want events.s.a {\"n\":1} with its header, attempt 1", evs[0])
	}
	if evs[1].Data != nil || evs[1].DataBase64 != "/wBiaW4=" {
		t.Errorf("binary event: data %v, data_base64 %q; want base64 /wBiaW4= alone", evs[1].Data, evs[1].DataBase64)
	}
	for _, w := range evs {
		ev, err := w.Event()
		require.NoError(t, err)
		if strings.Contains(string(ev.Data), "not mine") {
			t.Errorf("an event outside the group's filter was handed out")
		}
	}

	other, err := ParseToken(evs[0].Token)
	require.NoError(t, err)
	other.Group = "elsewhere"
	req := fmt.Sprintf(`{"ack":[%q,%q,"garbage"],"nak":[{"token":%q,"delay_ms":0}],"term":[{"token":%q,"reason":"no use"}]}`,
		evs[0].Token, other.String(), evs[1].Token, evs[2].Token)
	code, body = ask(t, nc, streams.ConsumeSubject("svc", "ack"), req)
	require.Empty(t, code, "%s", body)
	var res AckResponse
	require.NoError(t, json.Unmarshal(body, &res))
	require.Len(t, res.Results, 5, "%s", body)
	want := []struct {
		op, code string
	}{{"ack", ""}, {"ack", service.CodeBadRequest}, {"ack", service.CodeBadRequest}, {"nak", ""}, {"term", ""}}
	for i, w := range want {
		r := res.Results[i]
		got := ""
		if r.Error != nil {
			got = r.Error.Code
		}
		if r.Op != w.op || got != w.code || r.OK != (w.code == "") {
			t.Errorf("result %d: op %s ok %v code %q, want op %s code %q (%s)", i, r.Op, r.OK, got, w.op, w.code, body)
		}
	}
	require.Equal(t, 3, res.Settled)

	// The nak'd event comes back as attempt 2.
	again := nextVia(t, nc, streams.ConsumeSubject("svc", "next"), 1)
	require.Equal(t, evs[1].Position, again[0].Position)
	require.Equal(t, 2, again[0].Attempt)

	// A second instance joins; the partitions spread over both. Events it
	// hands out are settled through the first one, which forwards them.
	b := e.startService(t, nil)
	clustertest.Eventually(t, 30*time.Second, func() error {
		ask(t, nc, streams.InstanceSubject("platform-consume", b.svc.ID(), streams.ConsumeSubject("svc", "next")), `{"max":1,"wait_ms":100}`)
		code, body := ask(t, nc, streams.ConsumeSubject("svc", "status"), ``)
		if code != "" {
			return fmt.Errorf("status: %s", body)
		}
		var st StatusResponse
		require.NoError(t, json.Unmarshal(body, &st))
		owners := map[string]bool{}
		for _, p := range st.PerPartition {
			owners[p.Owner] = true
		}
		if len(st.Members) != 2 || !owners[a.svc.ID()] || !owners[b.svc.ID()] {
			return fmt.Errorf("status %s: want both instances owning a partition", body)
		}
		return nil
	})
	for i, tp := range []string{"b", "c", "d", "e"} {
		_, err := e.js.Publish(ctx, "events.s."+tp, []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	got := nextVia(t, nc, streams.InstanceSubject("platform-consume", b.svc.ID(), streams.ConsumeSubject("svc", "next")), 1)
	code, body = ask(t, nc, streams.InstanceSubject("platform-consume", a.svc.ID(), streams.ConsumeSubject("svc", "ack")), fmt.Sprintf(`{"ack":[%q]}`, got[0].Token))
	require.Empty(t, code, "%s", body)
	require.Contains(t, string(body), `"settled":1`, "an ack forwarded to the instance that handed the event out: %s", body)
}

// TestServiceRefusesBadInput sends garbage, huge bodies, wrong types and
// null to every consume.* subject: each gets an error body with the
// repo's codes, counted as a bad body, and the service still answers.
func TestServiceRefusesBadInput(t *testing.T) {
	e := newGroupEnv(t)
	reg := prometheus.NewRegistry()
	e.startService(t, reg)
	nc := e.nc
	code, body := ask(t, nc, streams.ConsumeSubject("bad", "create"), ``)
	require.Empty(t, code, "%s", body)

	huge := strings.Repeat("x", 2<<20)
	for _, tc := range []struct {
		verb, body, code string
		counted          bool
	}{
		{"next", `{"max":`, service.CodeBadRequest, true},
		{"next", `null`, service.CodeBadRequest, true},
		{"next", `{"max":"ten"}`, service.CodeBadRequest, true},
		{"next", `{"max":-1}`, service.CodeBadRequest, false},
		{"next", `{"max":1e9}`, service.CodeBadRequest, true},
		{"next", `{"wait_ms":3600000}`, service.CodeBadRequest, false},
		{"next", `{"unknown":1}`, service.CodeBadRequest, true},
		{"next", huge, service.CodeTooLarge, false},
		{"ack", ``, service.CodeBadRequest, true},
		{"ack", `null`, service.CodeBadRequest, true},
		{"ack", `{}`, service.CodeBadRequest, false},
		{"ack", `{"ack":"tok"}`, service.CodeBadRequest, true},
		{"ack", `{"ack":[1,2]}`, service.CodeBadRequest, true},
		{"ack", `{"nak":[{"token":"t","delay_ms":-5}]}`, service.CodeBadRequest, false},
		{"ack", `[1,2,3]`, service.CodeBadRequest, true},
		{"ack", huge, service.CodeTooLarge, false},
		{"create", `null`, service.CodeBadRequest, true},
		{"create", `{"partitions":"many"}`, service.CodeBadRequest, true},
		{"create", `{"partitions":100000}`, service.CodeBadRequest, false},
		{"create", `{"filter":["orders"]}`, service.CodeBadRequest, false},
		{"create", "\x00\x01garbage", service.CodeBadRequest, true},
		{"status", huge, service.CodeTooLarge, false},
	} {
		name := fmt.Sprintf("%s %.30q", tc.verb, tc.body)
		group := "bad"
		if tc.verb == "create" {
			group = "fresh"
		}
		before := badBodies(reg, tc.verb)
		code, body := ask(t, nc, streams.ConsumeSubject(group, tc.verb), tc.body)
		if code != tc.code {
			t.Errorf("%s: code %q, want %q (%.200s)", name, code, tc.code, body)
		}
		if n := badBodies(reg, tc.verb) - before; tc.counted && n != 1 {
			t.Errorf("%s: counted %v bad bodies, want 1", name, n)
		}
	}
	if _, err := nc.Request("consume.a.b.next", []byte(`{}`), 200*time.Millisecond); err == nil {
		t.Errorf("consume.a.b.next: answered, want no responder")
	}
	for _, s := range []string{"consume.a%2A.next", "consume.a$.ack", "consume.é.status"} {
		if code, body := ask(t, nc, s, `{}`); code != service.CodeBadRequest {
			t.Errorf("%s: code %q, want bad_request for the group's name (%s)", s, code, body)
		}
	}
	code, body = ask(t, nc, streams.ConsumeSubject("bad", "next"), `{"max":1}`)
	require.Empty(t, code, "a valid next after the garbage: %s", body)
	code, _ = ask(t, nc, streams.ConsumeSubject("fresh", "status"), ``)
	require.Equal(t, service.CodeNotFound, code, "no bad create made a group")
}

// badBodies reads the bad-bodies counter of endpoint verb (JSON).
func badBodies(reg *prometheus.Registry, verb string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "platform_service_bad_bodies_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["service"] == ServiceName && labels["endpoint"] == verb && labels["codec"] == "json" {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}
