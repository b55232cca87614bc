package cluster

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// Health runs nats-server's own health check (Healthz with JetStream
// details: the meta layer, then every stream and consumer replica the node
// holds) on every running local node, and checks that its JetStream file
// storage has room, and that it is connected to enough of its cluster's
// peers for a JetStream quorum. It returns one error per problem, each
// naming its node; none means every local node serves the data path.
// Stopped nodes are not judged here: whether their streams keep a quorum
// is.
func (c *Cluster) Health() []error {
	var errs []error
	for _, n := range c.Nodes() {
		s := n.Server()
		if s == nil {
			continue
		}
		if js, err := s.Jsz(&server.JSzOptions{}); err == nil && !js.Disabled {
			for _, err := range []error{storageFull(s, js), quorumLost(s, js)} {
				if err != nil {
					errs = append(errs, fmt.Errorf("node %s: %w", n.Name(), err))
				}
			}
		}
		h := s.Healthz(&server.HealthzOptions{Details: true})
		if h == nil {
			continue
		}
		if h.Error != "" {
			errs = append(errs, fmt.Errorf("node %s: %s", n.Name(), h.Error))
		}
		for _, e := range h.Errors {
			errs = append(errs, fmt.Errorf("node %s: %s", n.Name(), e.Error))
		}
	}
	return errs
}

// storageFull returns an error when the node's JetStream file storage has
// reached its limit (max_file_store), where the server refuses every
// write with "insufficient resources".
func storageFull(s *server.Server, js *server.JSInfo) error {
	cfg := s.JetStreamConfig()
	if cfg == nil || cfg.MaxStore <= 0 {
		return nil
	}
	if int64(js.Store) > cfg.MaxStore {
		return fmt.Errorf("JetStream file storage full: %d of %d bytes used (max_file_store); writes are refused until space is freed", js.Store, cfg.MaxStore)
	}
	return nil
}

// quorumLost returns an error when the node is connected, through its
// cluster routes, to fewer peers than its JetStream meta group needs for a
// quorum. The node knows this the moment a route closes, where a stream
// look-up only learns it when it times out, and nats-server's health check
// not at all until its RAFT groups lose their leaders.
func quorumLost(s *server.Server, js *server.JSInfo) error {
	if js.Meta == nil || js.Meta.Size <= 1 {
		return nil
	}
	routes, err := s.Routez(&server.RoutezOptions{})
	if err != nil {
		return nil
	}
	peers := map[string]bool{}
	for _, r := range routes.Routes {
		peers[r.RemoteID] = true
	}
	if reachable := 1 + len(peers); reachable < js.Meta.QuorumNeeded {
		return fmt.Errorf("connected to %d of %d JetStream peers, a quorum needs %d servers: streams and KV cannot take writes",
			len(peers), js.Meta.Size-1, js.Meta.QuorumNeeded)
	}
	return nil
}
