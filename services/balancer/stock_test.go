package balancer_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// stockService starts an instance of micro service name built with
// nats.go/micro alone, as any NATS user would, answering subject with its
// id after delay. With optIn it also follows the balancer's convention: an
// endpoint on inst.<name>.<id>.<subject>, its metadata instance_of =
// <subject>. claim, if set, is an instance endpoint it declares under
// another service's name, which the balancer must ignore.
func stockService(t *testing.T, nc *nats.Conn, name, subject string, delay time.Duration, optIn bool, claim string) micro.Service {
	t.Helper()
	svc, err := micro.AddService(nc, micro.Config{Name: name, Version: "1.0.0"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	id := svc.Info().ID
	h := micro.HandlerFunc(func(r micro.Request) {
		time.Sleep(delay)
		_ = r.RespondJSON(map[string]string{"id": id})
	})
	require.NoError(t, svc.AddEndpoint("get", h, micro.WithEndpointSubject(subject)))
	if optIn {
		require.NoError(t, svc.AddEndpoint("get_instance", h,
			micro.WithEndpointSubject(streams.InstanceSubject(name, id, subject)),
			micro.WithEndpointMetadata(map[string]string{service.MetadataInstanceOf: subject})))
	}
	if claim != "" {
		require.NoError(t, svc.AddEndpoint("claim", h,
			micro.WithEndpointSubject(streams.InstanceSubject(claim, id, subject)),
			micro.WithEndpointMetadata(map[string]string{service.MetadataInstanceOf: subject})))
	}
	return svc
}

// TestRouteStockMicroService routes to micro services built with
// nats.go/micro, not the platform's service package, one instance of each
// forty times slower than the other. A plain one exposes no subject that
// reaches one instance ($SRV.INFO lists its endpoints on the shared
// subject, in a queue group), so route.<subject> reaches it through its
// queue group: the slow instance gets about half the requests. One that
// adds the per-instance endpoint of the convention is routed by power of
// two choices: the slow instance gets few. An instance endpoint declared
// under another service's name is ignored.
func TestRouteStockMicroService(t *testing.T) {
	c, _, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	const fast, slow = time.Millisecond, 40 * time.Millisecond
	plainSlow := stockService(t, clustertest.Connect(t, c), "plain", "plain.get", slow, false, "")
	stockService(t, clustertest.Connect(t, c), "plain", "plain.get", fast, false, "")
	optedSlow := stockService(t, clustertest.Connect(t, c), "opted", "opted.get", slow, true, "")
	stockService(t, clustertest.Connect(t, c), "opted", "opted.get", fast, true, "")
	liar := stockService(t, clustertest.Connect(t, c), "liar", "liar.get", fast, false, "opted")
	nc := clustertest.Connect(t, c)
	bal := startBalancer(t, ctx, nc, nil)

	// share sends requests through route.<subject> from a few clients
	// and returns the share the slow instance answered.
	share := func(subject, slowID string) float64 {
		const clients, each = 4, 50
		var mu sync.Mutex
		bySlow, all := 0, 0
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range each {
					m, err := nc.Request(streams.RouteSubject(subject), nil, 5*time.Second)
					if err != nil {
						t.Errorf("route.%s: %v", subject, err)
						return
					}
					var got map[string]string
					if err := json.Unmarshal(m.Data, &got); err != nil || got["id"] == "" {
						t.Errorf("route.%s answered %s", subject, m.Data)
						return
					}
					mu.Lock()
					all++
					if got["id"] == slowID {
						bySlow++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return float64(bySlow) / float64(max(all, 1))
	}
	for _, s := range []string{"plain.get", "opted.get"} {
		clustertest.Eventually(t, 10*time.Second, func() error {
			m, err := nc.Request(streams.RouteSubject(s), nil, 5*time.Second)
			if err != nil {
				return err
			}
			if code := errorCode(t, m); code != "" {
				return fmt.Errorf("route.%s: %s", s, m.Data)
			}
			return nil
		})
	}
	// The opted-in instances are both known to the router before it is
	// judged.
	clustertest.Eventually(t, 10*time.Second, func() error {
		n := 0
		for _, in := range bal.Status().Instances {
			if in.Service == "opted" && in.Routed > 0 {
				n++
			}
		}
		if n < 2 {
			for range 20 {
				_, _ = nc.Request(streams.RouteSubject("opted.get"), nil, 5*time.Second)
			}
			return fmt.Errorf("%d opted-in instances routed to, want 2", n)
		}
		return nil
	})

	plainShare := share("plain.get", plainSlow.Info().ID)
	optedShare := share("opted.get", optedSlow.Info().ID)
	t.Logf("slow instance's share: plain %.1f%%, opted in %.1f%%", plainShare*100, optedShare*100)
	if plainShare < 0.3 {
		t.Errorf("plain service: slow instance answered %.1f%%, want about half (its queue group picks at random)", plainShare*100)
	}
	if optedShare > 0.15 {
		t.Errorf("opted-in service: slow instance answered %.1f%%, want under 15%% (power of two choices)", optedShare*100)
	}
	for _, in := range bal.Status().Instances {
		switch {
		case in.Service == "plain" && in.Routed > 0:
			t.Errorf("plain instance %s routed to on an instance subject it does not have", in.Instance)
		case in.Service == "liar" || (in.Service == "opted" && in.Instance == liar.Info().ID):
			if in.Routed > 0 {
				t.Errorf("instance endpoint claimed under another name was routed to: %+v", in)
			}
		}
	}
}
