// Package leaders evens out stream and consumer RAFT leaders across a
// cluster's nodes with jsm.go. It links nats-server (through jsm.go's API
// types), so it lives apart from the balancer, which is handed a Placer.
package leaders

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/jsm.go"
	"github.com/nats-io/jsm.go/api"
	jsmbalancer "github.com/nats-io/jsm.go/balancer"
	"github.com/nats-io/nats.go"

	"github.com/platform/platform/services/balancer"
)

// group is a RAFT group that has a leader: a stream or a consumer.
type group interface {
	LeaderStepDown(...*api.Placement) error
	ClusterInfo() (api.ClusterInfo, error)
	Name() string
}

// raftGroups lists every replicated stream and consumer.
func raftGroups(mgr *jsm.Manager) ([]*jsm.Stream, []*jsm.Consumer, error) {
	ss, _, _, err := mgr.Streams(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("list streams: %w", err)
	}
	var cons []*jsm.Consumer
	var streams []*jsm.Stream
	for _, s := range ss {
		if s.Replicas() < 2 {
			continue
		}
		streams = append(streams, s)
		cs, _, _, err := mgr.Consumers(s.Name())
		if err != nil {
			return nil, nil, fmt.Errorf("list consumers of %s: %w", s.Name(), err)
		}
		for _, c := range cs {
			if c.Replicas() != 1 && !c.MemoryStorage() {
				cons = append(cons, c)
			}
		}
	}
	return streams, cons, nil
}

// leaderCounts counts the leaders of groups per node, every peer of a
// group included at zero.
func leaderCounts(groups []group) map[string]int {
	out := map[string]int{}
	for _, g := range groups {
		ci, err := g.ClusterInfo()
		if err != nil {
			continue
		}
		if ci.Leader != "" {
			out[ci.Leader]++
		}
		for _, r := range ci.Replicas {
			out[r.Name] += 0
		}
	}
	return out
}

func allGroups(ss []*jsm.Stream, cs []*jsm.Consumer) []group {
	out := make([]group, 0, len(ss)+len(cs))
	for _, s := range ss {
		out = append(out, s)
	}
	for _, c := range cs {
		out = append(out, c)
	}
	return out
}

// Placer is the balancer's leader placement through jsm.go.
type Placer struct{}

var _ balancer.LeaderPlacer = Placer{}

// Counts returns the stream and consumer leaders per node.
func (Placer) Counts(nc *nats.Conn) (map[string]int, error) {
	mgr, err := jsm.New(nc)
	if err != nil {
		return nil, fmt.Errorf("leaders: %w", err)
	}
	ss, cs, err := raftGroups(mgr)
	if err != nil {
		return nil, fmt.Errorf("leaders: %w", err)
	}
	return leaderCounts(allGroups(ss, cs)), nil
}

// Balance evens out stream and consumer RAFT leaders across nodes:
// first with jsm.go's balancer, then, since that one aims at
// ceil(n/nodes + 0.5) leaders per node, by moving single leaders from the
// busiest node to the idlest one that holds a replica until no node leads
// more than one group above another. Elections are asynchronous, so the
// After counts are read once the moves settle only as far as ctx allows.
func (Placer) Balance(ctx context.Context, nc *nats.Conn, log *slog.Logger) (balancer.LeaderReport, error) {
	if log == nil {
		log = slog.Default()
	}
	mgr, err := jsm.New(nc)
	if err != nil {
		return balancer.LeaderReport{}, fmt.Errorf("balance leaders: %w", err)
	}
	ss, cs, err := raftGroups(mgr)
	if err != nil {
		return balancer.LeaderReport{}, fmt.Errorf("balance leaders: %w", err)
	}
	rep := balancer.LeaderReport{Before: leaderCounts(allGroups(ss, cs))}
	if balancer.Skew(rep.Before) > 1 {
		b, err := jsmbalancer.New(nc, jsmLogger{log})
		if err != nil {
			return rep, fmt.Errorf("balance leaders: %w", err)
		}
		n, err := b.BalanceStreams(ss)
		rep.Moved += n
		if err != nil {
			log.Warn("balance stream leaders", "err", err)
		}
		if len(cs) > 0 {
			n, err = b.BalanceConsumers(cs)
			rep.Moved += n
			if err != nil {
				log.Warn("balance consumer leaders", "err", err)
			}
		}
		waitElections(ctx, mgr)
	}
	for range 3 * (len(ss) + len(cs)) {
		if ctx.Err() != nil {
			break
		}
		if ss, cs, err = raftGroups(mgr); err != nil {
			return rep, fmt.Errorf("balance leaders: %w", err)
		}
		moved, err := moveOne(allGroups(ss, cs))
		if err != nil {
			log.Warn("move a leader", "err", err)
		}
		if !moved {
			break
		}
		rep.Moved++
		waitElections(ctx, mgr)
	}
	if ss, cs, err = raftGroups(mgr); err == nil {
		rep.After = leaderCounts(allGroups(ss, cs))
	}
	return rep, nil
}

// moveOne asks one group led by the busiest node to elect the idlest node
// among its replicas, when that narrows a skew above one.
func moveOne(groups []group) (bool, error) {
	counts := leaderCounts(groups)
	if balancer.Skew(counts) <= 1 {
		return false, nil
	}
	nodes := make([]string, 0, len(counts))
	for n := range counts {
		nodes = append(nodes, n)
	}
	// Busiest first; ties by name so passes are repeatable.
	slices.SortFunc(nodes, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return cmpString(a, b)
	})
	for _, from := range nodes {
		for _, g := range groups {
			ci, err := g.ClusterInfo()
			if err != nil || ci.Leader != from {
				continue
			}
			to := ""
			for _, r := range ci.Replicas {
				if r.Current && !r.Offline && counts[r.Name] < counts[from]-1 && (to == "" || counts[r.Name] < counts[to]) {
					to = r.Name
				}
			}
			if to == "" {
				continue
			}
			if err := g.LeaderStepDown(&api.Placement{Preferred: to, Cluster: ci.Name}); err != nil {
				return false, fmt.Errorf("step down %s for %s: %w", g.Name(), to, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// waitElections waits, up to 2s or until ctx ends, for every group to
// have a leader again after a step-down.
func waitElections(ctx context.Context, mgr *jsm.Manager) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ss, cs, err := raftGroups(mgr)
		if err != nil {
			continue
		}
		settled := true
		for _, g := range allGroups(ss, cs) {
			if ci, err := g.ClusterInfo(); err != nil || ci.Leader == "" {
				settled = false
				break
			}
		}
		if settled {
			return
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// jsmLogger sends jsm.go's logs to slog.
type jsmLogger struct{ log *slog.Logger }

func (l jsmLogger) Tracef(f string, a ...any) {}
func (l jsmLogger) Debugf(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l jsmLogger) Infof(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l jsmLogger) Warnf(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l jsmLogger) Errorf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }
