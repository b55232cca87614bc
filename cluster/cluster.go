// Package cluster runs an embedded NATS JetStream cluster inside the process:
// N nodes routed together on one host, or one node of a multi-host cluster
// started from a standard nats-server config file.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/platform/platform/auth"
)

// Options configure an embedded cluster. The zero value is completed by
// defaults: three nodes on 127.0.0.1, client ports 4222.., cluster ports
// 6222.., storage under ./data, fsync on every write.
type Options struct {
	// Nodes is how many nodes to run in this process (default 3). Ignored
	// when ConfigFile is set: a config file describes exactly one node.
	Nodes int
	// DataDir holds one JetStream store directory per node (default ./data).
	DataDir string
	// Host is the address every node listens on (default 127.0.0.1).
	Host string
	// ClientPort is node 1's client port; node k uses ClientPort+k-1
	// (default 4222).
	ClientPort int
	// ClusterPort is node 1's route port; node k uses ClusterPort+k-1
	// (default 6222).
	ClusterPort int
	// Name is the cluster name (default "platform").
	Name string
	// ConfigFile, when set, starts one node from a nats-server config file;
	// the port and directory options above are then ignored.
	ConfigFile string
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	SyncAlways bool
	// SyncInterval is how often JetStream fsyncs when SyncAlways is false
	// (default: the server's own, two minutes).
	SyncInterval time.Duration
	// MaxStore caps each node's JetStream file storage in bytes (default
	// 64 GiB); once reached, writes are refused as insufficient resources
	// until space is freed. A config file sets it with max_file_store.
	MaxStore int64
	// ReadyTimeout bounds how long Start waits for the cluster to form
	// (default 30s).
	ReadyTimeout time.Duration
	// TLS turns on TLS for clients and routes (not with ConfigFile, whose
	// own tls blocks apply).
	TLS TLS
	// Users, when set, are the only users the nodes accept, each with its
	// role's permissions (not with ConfigFile: use its authorization block).
	Users []auth.User
	// Logger receives the servers' logs (default slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.DataDir == "" {
		o.DataDir = "data"
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ClientPort == 0 {
		o.ClientPort = 4222
	}
	if o.ClusterPort == 0 {
		o.ClusterPort = 6222
	}
	if o.Name == "" {
		o.Name = "platform"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.MaxStore == 0 {
		o.MaxStore = 64 << 30
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	if o.ConfigFile != "" {
		if o.TLS.Enabled() || len(o.Users) > 0 {
			return errors.New("with a config file, TLS and users come from its tls and authorization blocks")
		}
		return nil
	}
	if err := o.TLS.validate(); err != nil {
		return err
	}
	if o.Nodes < 1 {
		return fmt.Errorf("nodes must be at least 1, got %d", o.Nodes)
	}
	if o.Nodes == 2 {
		return errors.New("nodes must be 1 or at least 3: a 2-node RAFT group loses its quorum with either node")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"client port", o.ClientPort}, {"cluster port", o.ClusterPort}} {
		if p.v < 1 || p.v+o.Nodes-1 > 65535 {
			return fmt.Errorf("%s %d out of range for %d nodes", p.name, p.v, o.Nodes)
		}
	}
	if o.ClientPort < o.ClusterPort+o.Nodes && o.ClusterPort < o.ClientPort+o.Nodes {
		return fmt.Errorf("client ports %d.. and cluster ports %d.. overlap", o.ClientPort, o.ClusterPort)
	}
	if o.SyncInterval < 0 {
		return fmt.Errorf("sync interval must be positive, got %s", o.SyncInterval)
	}
	return nil
}

// Node is one embedded server with the options it was started from, so it
// can be stopped and started again on the same ports and storage.
type Node struct {
	opts *server.Options
	srv  atomic.Pointer[server.Server] // nil while stopped; read without the cluster's lock
	log  *serverLogger
}

// Server returns the running server, or nil while the node is stopped.
func (n *Node) Server() *server.Server { return n.srv.Load() }

// Name returns the node's server name.
func (n *Node) Name() string { return n.opts.ServerName }

// ClientURL returns the node's client URL.
func (n *Node) ClientURL() string {
	return "nats://" + net.JoinHostPort(hostOrLoopback(n.opts.Host), strconv.Itoa(n.opts.Port))
}

// Cluster is a set of embedded nodes run by this process.
type Cluster struct {
	opts   Options
	log    *slog.Logger
	mu     sync.Mutex
	nodes  []*Node
	closed bool
}

// Start starts the nodes and waits until they have formed a JetStream
// cluster with a meta leader that sees every peer. On error every node that
// was started is shut down again.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, log: opts.Logger.With("component", "cluster")}
	var nodeOpts []*server.Options
	if opts.ConfigFile != "" {
		so, err := fromConfigFile(opts)
		if err != nil {
			return nil, err
		}
		nodeOpts = append(nodeOpts, so)
	} else {
		for i := range opts.Nodes {
			so, err := defaultNodeOptions(opts, i)
			if err != nil {
				return nil, err
			}
			nodeOpts = append(nodeOpts, so)
		}
	}
	for _, so := range nodeOpts {
		if err := checkPortFree(so.Host, so.Port, "client"); err != nil {
			return nil, err
		}
		if so.Cluster.Port > 0 {
			if err := checkPortFree(so.Cluster.Host, so.Cluster.Port, "cluster"); err != nil {
				return nil, err
			}
		}
		if so.StoreDir != "" {
			if err := checkWritableDir(so.StoreDir); err != nil {
				return nil, err
			}
		}
	}
	// Start every node before waiting for any, so routes form at once and
	// a restarted cluster elects its leaders without waiting node by node.
	errs := make(chan error, len(nodeOpts))
	for _, so := range nodeOpts {
		n := &Node{opts: so}
		c.nodes = append(c.nodes, n)
		go func() { errs <- c.startNode(n, len(nodeOpts) > 1) }()
	}
	var startErr error
	for range nodeOpts {
		if err := <-errs; err != nil && startErr == nil {
			startErr = err
		}
	}
	if startErr != nil {
		c.Shutdown()
		return nil, startErr
	}
	if opts.ConfigFile == "" || len(nodeOpts[0].Routes) == 0 {
		rctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
		defer cancel()
		if err := c.WaitReady(rctx); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	return c, nil
}

// startNode starts one node. withSiblings says other nodes of this process
// start at the same time, so its first refused route dials are expected.
func (c *Cluster) startNode(n *Node, withSiblings bool) error {
	n.log = newServerLogger(c.opts.Logger.With("component", "nats"), n.opts.ServerName)
	if withSiblings {
		n.log.startingUntil = time.Now().Add(c.opts.ReadyTimeout)
	}
	s, err := server.NewServer(n.opts)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.opts.ServerName, err)
	}
	s.SetLoggerV2(n.log, n.opts.Debug, n.opts.Trace, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		if ferr := n.log.fatalErr(); ferr != nil {
			return fmt.Errorf("node %s: %w", n.opts.ServerName, ferr)
		}
		return fmt.Errorf("node %s: not ready for connections within 10s", n.opts.ServerName)
	}
	if ferr := n.log.fatalErr(); ferr != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("node %s: %w", n.opts.ServerName, ferr)
	}
	c.mu.Lock()
	n.srv.Store(s)
	c.mu.Unlock()
	return nil
}

// Nodes returns the cluster's nodes in start order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// ClientURLs returns every node's client URL, for a client to connect with
// failover.
func (c *Cluster) ClientURLs() []string {
	var urls []string
	for _, n := range c.Nodes() {
		urls = append(urls, n.ClientURL())
	}
	return urls
}

// Replicas is the replica count the cluster's streams should have: 3 on
// three or more nodes, 1 on a single node. A node started from a config
// file counts its routes as peers.
func (c *Cluster) Replicas() int {
	n := len(c.nodes)
	if c.opts.ConfigFile != "" && len(c.nodes) == 1 {
		n += len(c.nodes[0].opts.Routes)
	}
	if n >= 3 {
		return 3
	}
	return 1
}

// MetaLeader returns the name of the JetStream meta leader among the local
// nodes, or "" when none of them leads.
func (c *Cluster) MetaLeader() string {
	for _, n := range c.Nodes() {
		if s := n.Server(); s != nil && s.JetStreamIsLeader() {
			return s.Name()
		}
	}
	return ""
}

// WaitReady waits until a local node is the meta leader and sees every
// local node as a JetStream peer, or, for a single-node cluster, until
// JetStream is enabled.
func (c *Cluster) WaitReady(ctx context.Context) error {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		if c.ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: no meta leader seeing all %d nodes: %w", len(c.Nodes()), ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Cluster) ready() bool {
	nodes := c.Nodes()
	running := 0
	for _, n := range nodes {
		s := n.Server()
		if s == nil {
			continue
		}
		if !s.JetStreamEnabled() {
			return false
		}
		running++
	}
	if len(nodes) == 1 && !nodes[0].Server().JetStreamIsClustered() {
		return running == 1
	}
	for _, n := range nodes {
		s := n.Server()
		if s != nil && s.JetStreamIsLeader() {
			return len(s.JetStreamClusterPeers()) >= running
		}
	}
	return false
}

// StopNode shuts one node down and waits until it has stopped. Its storage
// stays; RestartNode brings it back.
func (c *Cluster) StopNode(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	s := n.srv.Swap(nil)
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// RestartNode starts a stopped node again on the same ports and storage and
// waits until the cluster is ready.
func (c *Cluster) RestartNode(ctx context.Context, i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	running := n.srv.Load() != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("node %s is already running", n.Name())
	}
	if err := c.startNode(n, false); err != nil {
		return err
	}
	return c.WaitReady(ctx)
}

// Shutdown stops every node, last started first, and waits for each to
// finish. It is safe to call more than once.
func (c *Cluster) Shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	nodes := append([]*Node(nil), c.nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if n.log != nil {
			n.log.stopping.Store(true)
		}
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		c.StopNode(i)
	}
	c.log.Info("cluster stopped", "nodes", len(nodes))
}
