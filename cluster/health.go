package cluster

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// Health runs nats-server's own health check (Healthz with JetStream
// details: the meta layer, then every stream and consumer replica the node
// holds) on every running local node, and checks that its JetStream file
// storage has room. It returns one error per problem, each naming its
// node; none means every local node serves the data path. Stopped nodes
// are not judged here: whether their streams keep a quorum is.
func (c *Cluster) Health() []error {
	var errs []error
	for _, n := range c.Nodes() {
		s := n.Server()
		if s == nil {
			continue
		}
		if err := storageFull(s); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name(), err))
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
func storageFull(s *server.Server) error {
	cfg := s.JetStreamConfig()
	if cfg == nil || cfg.MaxStore <= 0 {
		return nil
	}
	js, err := s.Jsz(&server.JSzOptions{})
	if err != nil || js.Disabled {
		return nil
	}
	if int64(js.Store) > cfg.MaxStore {
		return fmt.Errorf("JetStream file storage full: %d of %d bytes used (max_file_store); writes are refused until space is freed", js.Store, cfg.MaxStore)
	}
	return nil
}
