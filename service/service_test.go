package service_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
)

// TestAnswersFromAnyGoroutine answers inline, from the endpoint's worker
// goroutines and after the handler returned, many at once, so the race
// detector sees every path.
func TestAnswersFromAnyGoroutine(t *testing.T) {
	c := clustertest.Start(t, 1)
	nc := clustertest.Connect(t, c)
	var later sync.WaitGroup
	svc, err := service.New(service.Options{
		Conn: nc, Name: "probe", Logger: clustertest.Logger(), HeartbeatInterval: -1,
		Endpoints: []service.Endpoint{
			{Name: "inline", Subject: "probe.inline", Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				return nil, service.Errorf(service.CodeConflict, "inline refusal")
			})},
			{Name: "pooled", Subject: "probe.pooled", Concurrency: 4, Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				return nil, errors.New("pooled failure")
			})},
			{Name: "later", Subject: "probe.later", Handler: func(_ context.Context, r *service.Request) {
				later.Add(1)
				go func() {
					defer later.Done()
					time.Sleep(time.Millisecond)
					r.Respond(map[string]bool{"ok": true})
					r.Fail(errors.New("ignored: already answered"))
				}()
			}},
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done); later.Wait() })
	<-svc.Ready()

	client := clustertest.Connect(t, c)
	tests := []struct {
		subject, code, status string
	}{
		{"probe.inline", service.CodeConflict, "409"},
		{"probe.pooled", service.CodeInternal, "500"},
		{"probe.later", "", ""},
	}
	var wg sync.WaitGroup
	for _, tt := range tests {
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, err := client.Request(tt.subject, []byte(`{}`), 5*time.Second)
				if err != nil {
					t.Errorf("%s: %v", tt.subject, err)
					return
				}
				e := service.ParseError(service.JSON, m.Data)
				switch {
				case tt.code == "" && e != nil:
					t.Errorf("%s: unexpected error %v", tt.subject, e)
				case tt.code != "" && (e == nil || e.Code != tt.code):
					t.Errorf("%s: got %q, want code %s", tt.subject, m.Data, tt.code)
				case m.Header.Get("Nats-Service-Error-Code") != tt.status:
					t.Errorf("%s: error code header %q, want %q", tt.subject, m.Header.Get("Nats-Service-Error-Code"), tt.status)
				case m.Header.Get(service.ContentTypeHeader) != service.ContentTypeJSON:
					t.Errorf("%s: content type %q", tt.subject, m.Header.Get(service.ContentTypeHeader))
				}
			}()
		}
	}
	wg.Wait()
}

// TestRunEndsWhenSubscriptionsClose closes the service's connection, and
// with it every endpoint subscription: Run returns an error saying so
// instead of heartbeating on as if it served, with or without heartbeats.
func TestRunEndsWhenSubscriptionsClose(t *testing.T) {
	c := clustertest.Start(t, 1)
	for _, tt := range []struct {
		name      string
		heartbeat time.Duration
	}{{"heartbeats", 50 * time.Millisecond}, {"no heartbeats", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			nc := clustertest.Connect(t, c)
			svc, err := service.New(service.Options{
				Conn: nc, Name: "closing", Logger: clustertest.Logger(), HeartbeatInterval: tt.heartbeat,
				Endpoints: []service.Endpoint{{Name: "echo", Subject: "closing.echo", Handler: service.Func(func(context.Context, *service.Request) (any, error) {
					return "ok", nil
				})}},
			})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			<-svc.Ready()
			nc.Close()
			select {
			case err := <-done:
				require.ErrorContains(t, err, "subscriptions were closed")
			case <-time.After(10 * time.Second):
				t.Fatal("Run still serving 10s after its connection closed")
			}
		})
	}
}
