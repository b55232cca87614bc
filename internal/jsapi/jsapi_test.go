package jsapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/internal/jsapi"
)

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"no responders", fmt.Errorf("publish: %w", nats.ErrNoResponders), true},
		{"request timeout", nats.ErrTimeout, true},
		{"deadline", context.DeadlineExceeded, true},
		{"canceled", context.Canceled, false},
		{"reconnecting", nats.ErrConnectionReconnecting, true},
		{"no stream response", jetstream.ErrNoStreamResponse, true},
		{"not leader", &jetstream.APIError{Code: 500, ErrorCode: jsapi.CodeClusterNotLeader}, true},
		{"stream offline", &jetstream.APIError{Code: 500, ErrorCode: jsapi.CodeStreamOffline}, true},
		{"batch too many in flight", &jetstream.APIError{Code: 400, ErrorCode: jsapi.CodeBatchTooManyInflight}, true},
		{"any 503", &jetstream.APIError{Code: 503, ErrorCode: 1}, true},
		{"store full (503, lasts until space is freed)", &jetstream.APIError{Code: 503, ErrorCode: jsapi.CodeInsufficientResources}, false},
		{"account storage exceeded", fmt.Errorf("publish: %w", &jetstream.APIError{Code: 400, ErrorCode: jsapi.CodeAccountResourcesExceeded}), false},
		{"wrong last sequence", &jetstream.APIError{Code: 400, ErrorCode: jsapi.CodeWrongLastSequence}, false},
		{"stream not found (wrapped by nats.go)", jetstream.ErrStreamNotFound, false},
		{"plain error", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := jsapi.IsTransient(tc.err); got != tc.want {
				t.Fatalf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestParsePubAck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		wantErr  bool
		wantSeq  uint64
		wantCode jetstream.ErrorCode
	}{
		{"ack", `{"stream":"EVENTS","seq":7}`, false, 7, 0},
		{"duplicate", `{"stream":"EVENTS","seq":7,"duplicate":true}`, false, 7, 0},
		{"with domain", `{"stream":"EVENTS","domain":"hub","seq":8}`, false, 8, 0},
		{"batch commit", `{"stream":"KV_STATE","seq":12,"batch":"b1","count":3}`, false, 12, 0},
		{"escaped stream name", `{"stream":"A\"B","seq":3}`, false, 3, 0},
		{"api error", `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}`, false, 0, jsapi.CodeWrongLastSequence},
		{"not json", `+OK`, true, 0, 0},
		{"not an ack", `{}`, true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := jsapi.ParsePubAck([]byte(tc.body))
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParsePubAck(%s) error = %v, want error %v", tc.body, err, tc.wantErr)
			}
			if a.Seq != tc.wantSeq {
				t.Fatalf("seq = %d, want %d", a.Seq, tc.wantSeq)
			}
			if tc.wantCode != 0 && !jsapi.HasCode(a.Err(), tc.wantCode) {
				t.Fatalf("error %v, want code %d", a.Err(), tc.wantCode)
			}
			if tc.wantCode == 0 && a.Err() != nil {
				t.Fatalf("unexpected API error %v", a.Err())
			}
		})
	}
}

// TestParsePubAckFastPathAgrees checks that the reflection-free path
// reads every common acknowledgement as encoding/json does.
func TestParsePubAckFastPathAgrees(t *testing.T) {
	for _, body := range []string{
		`{"stream":"EVENTS","seq":1}`,
		`{"stream":"EVENTS","seq":18446744073709551615,"duplicate":true}`,
		`{"stream":"EVENTS","domain":"hub","seq":8}`,
		`{"stream":"EVENTS", "seq":9,"duplicate": true}`,
	} {
		got, err := jsapi.ParsePubAck([]byte(body))
		require.NoError(t, err)
		var want jsapi.PubAck
		require.NoError(t, json.Unmarshal([]byte(body), &want))
		if got != want {
			t.Errorf("ParsePubAck(%s) = %+v, encoding/json reads %+v", body, got, want)
		}
	}
}

func BenchmarkParsePubAck(b *testing.B) {
	body := []byte(`{"stream":"EVENTS","seq":123456789}`)
	for b.Loop() {
		if _, err := jsapi.ParsePubAck(body); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := jsapi.Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for _, tc := range []struct {
		attempt int
		hi      time.Duration
	}{{0, 10 * time.Millisecond}, {1, 20 * time.Millisecond}, {3, 80 * time.Millisecond}, {10, 80 * time.Millisecond}, {100, 80 * time.Millisecond}} {
		for range 50 {
			d := b.Delay(tc.attempt)
			if d < tc.hi/2 || d >= tc.hi {
				t.Fatalf("Delay(%d) = %s, want in [%s, %s)", tc.attempt, d, tc.hi/2, tc.hi)
			}
		}
	}
}

func TestRetryDo(t *testing.T) {
	transient := &jetstream.APIError{Code: 503, ErrorCode: jsapi.CodeClusterNotAvail}
	t.Run("succeeds after transient errors", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n, retries := 0, 0
			err := jsapi.Retry{OnRetry: func(error, time.Duration) { retries++ }}.Do(t.Context(), func(context.Context) error {
				if n++; n < 4 {
					return transient
				}
				return nil
			})
			require.NoError(t, err)
			if n != 4 || retries != 3 {
				t.Fatalf("attempts %d retries %d, want 4 and 3", n, retries)
			}
		})
	})
	t.Run("permanent error returned at once", func(t *testing.T) {
		perm := errors.New("bad request")
		n := 0
		err := jsapi.Retry{}.Do(t.Context(), func(context.Context) error { n++; return perm })
		if !errors.Is(err, perm) || errors.Is(err, jsapi.ErrGaveUp) || n != 1 {
			t.Fatalf("got %v after %d attempts, want the permanent error after 1", err, n)
		}
	})
	t.Run("timeout gives up", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			err := jsapi.Retry{Timeout: time.Second}.Do(t.Context(), func(context.Context) error { return transient })
			if !errors.Is(err, jsapi.ErrGaveUp) || !errors.Is(err, transient) {
				t.Fatalf("got %v, want ErrGaveUp wrapping the last error", err)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("gave up after %s, past the 1s timeout", took)
			}
		})
	})
	t.Run("context end gives up", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			err := jsapi.Retry{}.Do(ctx, func(context.Context) error { return transient })
			if !errors.Is(err, jsapi.ErrGaveUp) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want ErrGaveUp wrapping the context's error", err)
			}
		})
	})
	t.Run("attempt timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := 0
			err := jsapi.Retry{AttemptTimeout: 50 * time.Millisecond, Timeout: time.Second}.Do(t.Context(), func(ctx context.Context) error {
				if n++; n == 1 {
					<-ctx.Done() // a request that is never answered
					return ctx.Err()
				}
				return nil
			})
			require.NoError(t, err)
		})
	})
}

func TestGetMsg(t *testing.T) {
	c := clustertest.Start(t, 1)
	nc, js := clustertest.JetStream(t, c)
	ctx := t.Context()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "GET", Subjects: []string{"get.>"}, AllowDirect: true})
	require.NoError(t, err)
	m := nats.NewMsg("get.a")
	m.Header.Set("X-Test", "1")
	m.Data = []byte("first")
	_, err = js.PublishMsg(ctx, m)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "get.a", []byte("second"))
	require.NoError(t, err)

	for _, via := range []jsapi.Via{jsapi.Leader, jsapi.Direct} {
		t.Run(fmt.Sprintf("via %d", via), func(t *testing.T) {
			got, err := jsapi.GetMsg(ctx, nc, "GET", jsapi.GetRequest{Seq: 1}, via)
			require.NoError(t, err)
			if got.Subject != "get.a" || got.Seq != 1 || string(got.Data) != "first" || got.Header.Get("X-Test") != "1" || got.Time.IsZero() {
				t.Fatalf("got %+v, want get.a seq 1 \"first\" with its header and time", got)
			}
			got, err = jsapi.GetMsg(ctx, nc, "GET", jsapi.GetRequest{LastBySubject: "get.a"}, via)
			require.NoError(t, err)
			if got.Seq != 2 || string(got.Data) != "second" {
				t.Fatalf("last by subject: got seq %d %q, want 2 \"second\"", got.Seq, got.Data)
			}
			_, err = jsapi.GetMsg(ctx, nc, "GET", jsapi.GetRequest{Seq: 99}, via)
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				t.Fatalf("missing message: got %v, want ErrMsgNotFound", err)
			}
		})
	}
	_, err = jsapi.GetMsg(ctx, nc, "NOPE", jsapi.GetRequest{Seq: 1}, jsapi.Leader)
	if !jsapi.HasCode(err, jsapi.CodeStreamNotFound) {
		t.Fatalf("missing stream: got %v, want code %d", err, jsapi.CodeStreamNotFound)
	}
}
