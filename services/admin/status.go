package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/platform/platform/health"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// Status is what `platform status` prints and admin.status answers.
type Status struct {
	// Embedded is true when the answering process runs the cluster itself.
	Embedded bool `json:"embedded"`
	// MetaLeader is the JetStream meta leader's name ("" when unknown: a
	// process on an external cluster without system account access, or a
	// single server, which has none).
	MetaLeader string `json:"meta_leader"`
	// MetaLeaderNote says why MetaLeader is empty.
	MetaLeaderNote string `json:"meta_leader_note,omitempty"`
	// Problems lists what keeps the data path from working (a stream
	// without a leader or below quorum, a node failing nats-server's
	// health check, storage full); empty when healthy.
	Problems []string `json:"problems"`
	// Nodes are the cluster's servers as far as they are known.
	Nodes []Node `json:"nodes"`
	// Streams are the account's streams, KV buckets included.
	Streams []Stream `json:"streams"`
	// Services are the micro service instances that answered a ping.
	Services []Instance `json:"services"`
}

// DecodeStatus reads an answer of admin.status: the *service.Error it
// carries (matched with errors.As), or the status. JSON spends no more
// memory on a list than the answer's bytes carry.
func DecodeStatus(data []byte) (*Status, error) {
	if e := service.ParseError(service.JSON, data); e != nil {
		return nil, fmt.Errorf("%s: %w", streams.AdminStatusSubject, e)
	}
	var st Status
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	return &st, nil
}

// Node is one server of the cluster.
type Node struct {
	Name       string `json:"name"`
	URL        string `json:"url,omitempty"`
	Running    bool   `json:"running"`
	MetaLeader bool   `json:"meta_leader"`
}

// Stream is one stream's placement and state.
type Stream struct {
	Name     string    `json:"name"`
	Leader   string    `json:"leader"`
	Replicas int       `json:"replicas"`
	Messages uint64    `json:"messages"`
	Bytes    uint64    `json:"bytes"`
	Peers    []Replica `json:"peers"`
	// Problem says why the stream cannot take writes ("" when it can).
	Problem string `json:"problem,omitempty"`
}

// Replica is a follower of a stream.
type Replica struct {
	Name    string  `json:"name"`
	Current bool    `json:"current"`
	Offline bool    `json:"offline,omitempty"`
	Lag     uint64  `json:"lag"`
	Active  float64 `json:"active_ms"`
}

// Instance is one micro service instance.
type Instance struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Version string `json:"version"`
	// Weight is the balancer's weight for it in KV WEIGHTS (nil: none
	// written), WeightReason the rule that decided it.
	Weight       *float64 `json:"weight,omitempty"`
	WeightReason string   `json:"weight_reason,omitempty"`
}

// PingWindow is how long Gather collects $SRV.PING answers.
const PingWindow = 250 * time.Millisecond

// Gather builds the status from the JetStream API, a $SRV.PING round (when
// withServices is set) and, when c is not nil, the embedded cluster's own
// view of its nodes.
func Gather(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, c Cluster, withServices bool) (*Status, error) {
	st := &Status{Embedded: c != nil, Nodes: []Node{}, Streams: []Stream{}, Services: []Instance{}, Problems: []string{}}
	known := map[string]bool{}
	// A single server (no cluster) holds every stream itself.
	single := c == nil && nc.ConnectedClusterName() == ""
	switch {
	case c != nil:
		for _, err := range c.Health() {
			st.Problems = append(st.Problems, err.Error())
		}
	case single:
		st.MetaLeaderNote = "none: a single server, not a cluster"
	default:
		st.MetaLeader, st.MetaLeaderNote = MetaLeader(ctx, nc)
	}
	if c != nil {
		st.MetaLeader = c.MetaLeader()
		for _, n := range c.Nodes() {
			n.MetaLeader = n.Name == st.MetaLeader
			st.Nodes = append(st.Nodes, n)
			known[n.Name] = true
		}
	}
	lister := js.ListStreams(ctx)
	for info := range lister.Info() {
		s := Stream{Name: info.Config.Name, Replicas: info.Config.Replicas, Messages: info.State.Msgs, Bytes: info.State.Bytes, Peers: []Replica{}}
		if info.Cluster != nil {
			s.Leader = info.Cluster.Leader
			for _, p := range info.Cluster.Replicas {
				s.Peers = append(s.Peers, Replica{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, Active: float64(p.Active.Microseconds()) / 1000})
			}
		}
		if s.Leader == "" && single {
			s.Leader = nc.ConnectedServerName()
		}
		if err := health.Stream(info); err != nil {
			s.Problem = err.Error()
			st.Problems = append(st.Problems, s.Problem)
		}
		st.Streams = append(st.Streams, s)
		if c == nil {
			for _, name := range append([]string{s.Leader}, peerNames(s.Peers)...) {
				if name != "" && !known[name] {
					known[name] = true
					st.Nodes = append(st.Nodes, Node{Name: name, Running: true})
				}
			}
		}
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	if c == nil {
		if err := health.Storage(ctx, js); err != nil {
			st.Problems = append(st.Problems, err.Error())
		}
	}
	sort.Slice(st.Streams, func(i, j int) bool { return st.Streams[i].Name < st.Streams[j].Name })
	if c == nil {
		sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	}
	if withServices {
		services, err := Ping(ctx, nc, PingWindow)
		if err != nil {
			return nil, err
		}
		st.Services = services
		addWeights(ctx, js, st.Services)
	}
	return st, nil
}

// addWeights fills in each instance's weight from KV WEIGHTS; without the
// bucket (a platform older than the balancer) the weights stay blank.
func addWeights(ctx context.Context, js jetstream.JetStream, insts []Instance) {
	kv, err := js.KeyValue(ctx, streams.BucketWeights)
	if err != nil {
		return
	}
	for i, in := range insts {
		e, err := kv.Get(ctx, streams.MemberKey(in.Name, in.ID))
		if err != nil {
			continue
		}
		if rec, err := balancer.DecodeRecord(e.Key(), e.Value()); err == nil {
			insts[i].Weight, insts[i].WeightReason = &rec.Weight, rec.Reason
		}
	}
}

func peerNames(ps []Replica) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// Ping sends $SRV.PING and collects the answers that arrive within window,
// sorted by service name then id.
func Ping(ctx context.Context, nc *nats.Conn, window time.Duration) ([]Instance, error) {
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("ping services: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.PING", inbox, nil); err != nil {
		return nil, fmt.Errorf("ping services: %w", err)
	}
	out := []Instance{}
	timer := time.NewTimer(window)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-timer.C:
			slices.SortFunc(out, func(a, b Instance) int {
				if a.Name != b.Name {
					if a.Name < b.Name {
						return -1
					}
					return 1
				}
				if a.ID < b.ID {
					return -1
				}
				return 1
			})
			return out, nil
		case m := <-ch:
			var p micro.Ping
			if json.Unmarshal(m.Data, &p) == nil && p.Name != "" {
				out = append(out, Instance{Name: p.Name, ID: p.ID, Version: p.Version})
			}
		}
	}
}

// metaLeaderHint is how to learn the meta leader of an external cluster.
const metaLeaderHint = "unknown: only the system account sees the JetStream meta leader; " +
	"run platform status with --creds FILE of a system account user (or a --server URL with a system user, nats://user:pass@host:4222)"

// MetaLeader asks the servers for the JetStream meta leader
// ($SYS.REQ.SERVER.PING.JSZ, answered only to the system account). It
// returns the leader's name, or "" and a note saying why it is unknown.
func MetaLeader(ctx context.Context, nc *nats.Conn) (leader, note string) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, "$SYS.REQ.SERVER.PING.JSZ", []byte(`{"leader_only":true}`))
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
			return "", metaLeaderHint
		}
		return "", fmt.Sprintf("unknown: %v", err)
	}
	var resp struct {
		Data struct {
			Meta struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		} `json:"data"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return "", fmt.Sprintf("unknown: decode JSZ answer: %v", err)
	}
	if resp.Error != nil {
		return "", "unknown: " + resp.Error.Description
	}
	if resp.Data.Meta.Leader == "" {
		return "", "none: the cluster has no meta leader now"
	}
	return resp.Data.Meta.Leader, ""
}
