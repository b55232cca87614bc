package cluster

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// defaultNodeOptions builds node i's server options from o, for a
// cluster started without a config file.
func defaultNodeOptions(o Options, i int) (*server.Options, error) {
	name := fmt.Sprintf("n%d", i+1)
	dir, err := filepath.Abs(filepath.Join(o.DataDir, name))
	if err != nil {
		return nil, fmt.Errorf("data dir %q: %w", o.DataDir, err)
	}
	// MaxPayload is 8 MiB, the most nats-server takes without a warning,
	// so the platform's own limits (1 MiB events and requests, 4 MiB
	// alerts.post) bind, not the server's.
	so := &server.Options{
		ServerName:         name,
		Host:               o.Host,
		Port:               o.ClientPort + i,
		JetStream:          true,
		StoreDir:           dir,
		SyncAlways:         o.SyncAlways,
		SyncInterval:       o.SyncInterval,
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 1 << 30,
		JetStreamMaxStore:  o.MaxStore,
	}
	if o.Nodes > 1 {
		so.Cluster = server.ClusterOpts{
			Name: o.Name,
			Host: o.Host,
			Port: o.ClusterPort + i,
		}
		for j := range o.Nodes {
			if j == i {
				continue
			}
			so.Routes = append(so.Routes, routeURL(o.Host, o.ClusterPort+j))
		}
	}
	if err := applySecurity(o, so); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return so, nil
}

func fromConfigFile(o Options) (*server.Options, error) {
	so, err := server.ProcessConfigFile(o.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", o.ConfigFile, err)
	}
	if !so.JetStream {
		return nil, fmt.Errorf("config %s: jetstream is not enabled (add a jetstream block)", o.ConfigFile)
	}
	if so.ServerName == "" {
		return nil, fmt.Errorf("config %s: server_name is required for a JetStream cluster node", o.ConfigFile)
	}
	if so.StoreDir == "" {
		so.StoreDir = filepath.Join(o.DataDir, so.ServerName)
	}
	if o.SyncAlways {
		so.SyncAlways = true
	}
	if o.SyncInterval > 0 {
		so.SyncInterval = o.SyncInterval
	}
	so.NoSigs = true
	return so, nil
}

func routeURL(host string, port int) *url.URL {
	return &url.URL{Scheme: "nats", Host: net.JoinHostPort(hostOrLoopback(host), strconv.Itoa(port))}
}

func hostOrLoopback(h string) string {
	if h == "" || h == "0.0.0.0" || h == "::" {
		return "127.0.0.1"
	}
	return h
}

func checkPortFree(host string, port int, what string) error {
	if port <= 0 {
		return nil
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s port %s is not available (is another platform or nats-server running?): %w", what, addr, err)
	}
	return l.Close()
}

func checkWritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// FreePorts returns the first of n consecutive TCP ports on host that are
// free now, for tests and benchmarks that start clusters side by side.
func FreePorts(host string, n int) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, err
		}
		first := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := first+n < 65000
		for p := first; ok && p < first+n; p++ {
			ok = checkPortFree(host, p, "") == nil
		}
		if ok {
			return first, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports on %s", n, host)
}
