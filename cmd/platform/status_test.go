package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// status runs `platform status --server url` with extra args and returns
// its output.
func status(t *testing.T, url string, args ...string) string {
	t.Helper()
	cmd := newStatusCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(append([]string{"--server", url}, args...))
	require.NoError(t, cmd.ExecuteContext(context.Background()))
	return out.String()
}

// TestStatusOfAStockServer runs status (no admin service answering)
// against a single server and against a cluster without system account
// access: the single server leads every stream, and the cluster's unknown
// meta leader comes with the reason and how to supply credentials.
func TestStatusOfAStockServer(t *testing.T) {
	for _, tt := range []struct {
		name       string
		nodes      int
		leaderNote string
	}{
		{"single server", 1, "a single server"},
		{"cluster without system account", 3, "--creds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := clustertest.Start(t, tt.nodes)
			_, js := clustertest.JetStream(t, c)
			ctx := clustertest.Context(t, clustertest.ReadyTimeout)
			_, err := streams.Provision(ctx, js, streams.All(c.Replicas()), nil)
			require.NoError(t, err)
			url := c.ClientURLs()[0]

			var st admin.Status
			require.NoError(t, json.Unmarshal([]byte(status(t, url, "--json")), &st))
			require.Empty(t, st.MetaLeader)
			require.Contains(t, st.MetaLeaderNote, tt.leaderNote)
			require.Len(t, st.Streams, len(streams.All(1)))
			for _, s := range st.Streams {
				if s.Leader == "" {
					t.Errorf("stream %s: blank leader", s.Name)
				}
				if tt.nodes == 1 && s.Leader != "n1" {
					t.Errorf("stream %s: leader %q, want the server n1", s.Name, s.Leader)
				}
			}
			text := status(t, url)
			require.Contains(t, text, "Meta leader: ("+st.MetaLeaderNote+")")
			require.Contains(t, text, "Health: ok")
			for line := range strings.Lines(text) {
				if strings.HasPrefix(line, streams.Events+" ") {
					require.Contains(t, line, " n", "EVENTS row names its leader: %q", line)
				}
			}
		})
	}
}

// TestStatusShowsWeights runs status against a service instance with a
// WEIGHTS record and one without: the first shows its weight and reason,
// the second a dash.
func TestStatusShowsWeights(t *testing.T) {
	c, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	var ids []string
	for range 2 {
		svc, err := service.New(service.Options{
			Conn: clustertest.Connect(t, c), Name: "demo", HeartbeatInterval: -1,
			Endpoints: []service.Endpoint{{Name: "echo", Subject: "demo.echo", Handler: service.Func(
				func(context.Context, *service.Request) (any, error) { return "ok", nil })}},
		})
		require.NoError(t, err)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = svc.Run(sctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-svc.Ready()
		ids = append(ids, svc.ID())
	}
	kv, err := js.KeyValue(ctx, streams.BucketWeights)
	require.NoError(t, err)
	rec, err := json.Marshal(balancer.Record{Service: "platform-demo", Instance: ids[0], Weight: 42, Reason: balancer.ReasonPolicy})
	require.NoError(t, err)
	_, err = kv.Put(ctx, streams.MemberKey("platform-demo", ids[0]), rec)
	require.NoError(t, err)

	url := nc.ConnectedUrl()
	var st admin.Status
	require.NoError(t, json.Unmarshal([]byte(status(t, url, "--json")), &st))
	weights := map[string]string{}
	for _, in := range st.Services {
		if in.Name == "platform-demo" {
			weights[in.ID] = "-"
			if in.Weight != nil {
				weights[in.ID] = fmt.Sprintf("%.0f %s", *in.Weight, in.WeightReason)
			}
		}
	}
	require.Equal(t, map[string]string{ids[0]: "42 policy", ids[1]: "-"}, weights)
	text := status(t, url)
	for line := range strings.Lines(text) {
		if strings.Contains(line, ids[0]) {
			require.Contains(t, line, "42 (policy)")
		}
	}
}

// TestStatusShowsConsumerGroups runs status against a group whose member
// holds back one topic's events: the group's line shows those events as
// its lag and names the partition and its owner; --json carries the same.
func TestStatusShowsConsumerGroups(t *testing.T) {
	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	store, err := txn.NewStore(nc, txn.WithLogger(clustertest.Logger()))
	require.NoError(t, err)
	m, err := consume.New(consume.Options{Conn: nc, Store: store, Group: "orders", Member: "m1",
		TTL: 2 * time.Second, Tick: 100 * time.Millisecond, Logger: clustertest.Logger(),
		Handler: func(*txn.Tx, replicator.Event) error { return errors.New("held back") }})
	require.NoError(t, err)
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := range 3 {
		_, err := js.Publish(ctx, streams.EventsPrefix+"stuck", fmt.Appendf(nil, "%d", i))
		require.NoError(t, err)
	}
	part := consume.Partition("stuck", consume.DefaultPartitions)

	url := nc.ConnectedUrl()
	var out struct {
		Streams        []admin.Stream `json:"streams"`
		ConsumerGroups []groupLine    `json:"consumer_groups"`
	}
	clustertest.Eventually(t, time.Minute, func() error {
		if err := json.Unmarshal([]byte(status(t, url, "--json")), &out); err != nil {
			return err
		}
		if len(out.ConsumerGroups) != 1 || out.ConsumerGroups[0].Worst != part {
			return fmt.Errorf("groups %+v", out.ConsumerGroups)
		}
		return nil
	})
	require.NotEmpty(t, out.Streams, "the admin status is still there")
	g := out.ConsumerGroups[0]
	require.Equal(t, groupLine{Group: "orders", Partitions: consume.DefaultPartitions, Members: 1, Head: g.Head,
		LagEvents: 3, LagSeconds: g.LagSeconds, Worst: part, WorstOwner: "m1", Exact: true}, g)
	require.Positive(t, g.LagSeconds)

	text := status(t, url)
	require.Contains(t, text, "GROUP ")
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "orders ") {
			require.Regexp(t, fmt.Sprintf(`^orders +16 +1 +\d+ +3 +[\d.]+m?s +%d \(m1\)`, part), line)
		}
	}
}
