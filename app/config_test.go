package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/services/detector"
)

// TestBadLeaseSettingStopsTheProcess gives each service with a lease a
// renew interval longer than its TTL: the process exits at start with an
// error that names the service and the setting, instead of restarting the
// service forever.
func TestBadLeaseSettingStopsTheProcess(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	const ttl, renew = time.Second, 2 * time.Second
	tests := []struct {
		name string
		new  func(d app.Deps) (app.Runner, error)
	}{
		{"detector", func(d app.Deps) (app.Runner, error) {
			return detector.New(detector.Options{Conn: d.Conn, Logger: d.Logger, LeaseTTL: ttl, LeaseRenew: renew})
		}},
		{"balancer", func(d app.Deps) (app.Runner, error) {
			return balancer.New(balancer.Options{Conn: d.Conn, Logger: d.Logger, LeaseTTL: ttl, LeaseRenew: renew})
		}},
		{"alerting", func(d app.Deps) (app.Runner, error) {
			return alerting.New(alerting.Options{Conn: d.Conn, Logger: d.Logger, LeaseTTL: ttl, LeaseRenew: renew})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "bad-" + tt.name
			a, err := app.New(app.Options{
				NATS: c.ClientURLs()[0], HTTPAddr: "127.0.0.1:0", Logger: clustertest.Logger(),
				Catalog: []app.Service{{Name: name, New: tt.new}}, Services: []string{name},
			})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			select {
			case err := <-done:
				require.Error(t, err)
				require.ErrorContains(t, err, name)
				require.ErrorContains(t, err, "ttl (1s) must exceed the renew interval (2s)")
			case <-a.Ready():
				t.Fatal("the process became ready with a lease renewed less often than it expires")
			case <-time.After(30 * time.Second):
				t.Fatal("the process still runs 30s after a bad lease setting")
			}
		})
	}
}
