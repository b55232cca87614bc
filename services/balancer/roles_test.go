package balancer_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// serve starts an instance of micro service platform-<name> answering
// each of subjects with its id.
func serve(t *testing.T, ctx context.Context, nc *nats.Conn, name string, subjects ...string) *service.Service {
	t.Helper()
	var svc *service.Service
	var eps []service.Endpoint
	for i, s := range subjects {
		eps = append(eps, service.Endpoint{
			Name: fmt.Sprintf("e%d", i), Subject: s,
			Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				return map[string]string{"id": svc.ID()}, nil
			}),
		})
	}
	svc, err := service.New(service.Options{Conn: nc, Name: name, HeartbeatInterval: 100 * time.Millisecond, Endpoints: eps})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal(name + " service not ready")
	}
	return svc
}

// refusals collects the permissions violations the server reports to a
// client.
type refusals struct {
	mu   sync.Mutex
	errs []string
}

func (r *refusals) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		r.mu.Lock()
		r.errs = append(r.errs, err.Error())
		r.mu.Unlock()
	}
}

func (r *refusals) of(subject string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		if strings.Contains(e, `Publish to "`+subject+`"`) {
			return true
		}
	}
	return false
}

// TestRouteFollowsRoles logs in as a user of each role under the
// platform's permissions, with the balancer and the services logged in as
// the service role, and sends each request directly and through
// route.<subject>: a role gets an answer through route. exactly when it
// gets one directly, and is refused otherwise with a permissions violation
// its client sees, not silence. What the service role may not do directly
// it may not ask of the balancer either.
func TestRouteFollowsRoles(t *testing.T) {
	var users []auth.User
	for _, r := range auth.Roles {
		users = append(users, auth.User{Name: r, Role: r, Password: r + "-secret"})
	}
	c := clustertest.StartWith(t, cluster.Options{Nodes: 1, Users: users})
	ctx := clustertest.Context(t, 2*time.Minute)
	connect := func(role string) (*nats.Conn, *refusals) {
		ref := &refusals{}
		nc, err := nats.Connect(c.ClientURLs()[0], nats.UserInfo(role, role+"-secret"),
			nats.CustomInboxPrefix(auth.InboxPrefix(role)), nats.ErrorHandler(ref.handler))
		require.NoError(t, err, "connect as %s", role)
		t.Cleanup(nc.Close)
		return nc, ref
	}
	admin, _ := connect(auth.RoleAdmin)
	ajs, err := jetstream.New(admin)
	require.NoError(t, err)
	_, err = streams.Provision(ctx, ajs, streams.All(1), nil)
	require.NoError(t, err)

	svcConn, _ := connect(auth.RoleService)
	serve(t, ctx, svcConn, "demo", "demo.echo")
	serve(t, ctx, svcConn, "front", "txn.get", "ingest.orders")
	bal := startBalancer(t, ctx, svcConn, nil)
	clustertest.Eventually(t, 10*time.Second, func() error {
		if n := len(bal.Status().Instances); n < 2 {
			return fmt.Errorf("balancer knows %d instances, want 2", n)
		}
		return nil
	})

	subjects := []string{"txn.get", "ingest.orders", "demo.echo"}
	allowed := map[string][]string{
		auth.RoleAdmin:    subjects,
		auth.RoleService:  subjects,
		auth.RoleProducer: {"txn.get", "ingest.orders"},
	}
	for _, role := range auth.Roles {
		t.Run(role, func(t *testing.T) {
			nc, ref := connect(role)
			for _, s := range subjects {
				may := false
				for _, a := range allowed[role] {
					may = may || a == s
				}
				for _, subj := range []string{s, streams.RouteSubject(s)} {
					if !may {
						require.NoError(t, nc.PublishRequest(subj, nc.NewRespInbox(), []byte("{}")))
						clustertest.Eventually(t, 5*time.Second, func() error {
							if !ref.of(subj) {
								return fmt.Errorf("%s: no permissions violation for %s", role, subj)
							}
							return nil
						})
						continue
					}
					clustertest.Eventually(t, 10*time.Second, func() error {
						m, err := nc.Request(subj, []byte("{}"), 2*time.Second)
						if err != nil {
							return fmt.Errorf("%s: %s: %w", role, subj, err)
						}
						if code := errorCode(t, m); code != "" {
							return fmt.Errorf("%s: %s answered %s", role, subj, m.Data)
						}
						return nil
					})
					if ref.of(subj) {
						t.Errorf("%s: %s answered and refused", role, subj)
					}
				}
			}
		})
	}

	// What the service role may not do directly (change streams) the
	// server refuses through route. too, before the balancer sees it.
	svc, ref := connect(auth.RoleService)
	subj := streams.RouteSubject("$JS.API.STREAM.DELETE." + streams.Events)
	require.NoError(t, svc.PublishRequest(subj, svc.NewRespInbox(), nil))
	clustertest.Eventually(t, 5*time.Second, func() error {
		if !ref.of(subj) {
			return fmt.Errorf("service: no permissions violation for %s", subj)
		}
		return nil
	})
}
