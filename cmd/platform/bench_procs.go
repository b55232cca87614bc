package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/internal/jsapi"
)

// procCluster is a cluster of `platform run --config` processes of this
// binary, one node each, on free loopback ports, whose nodes a benchmark
// can kill with SIGKILL: a crash, where the in-process stop of the
// embedded cluster is a clean shutdown.
type procCluster struct {
	bin  string
	dir  string
	urls []string
	// procs is filled before the benchmark starts and only read after.
	procs map[string]*nodeProc
}

// nodeProc is one node's process.
type nodeProc struct {
	args   []string
	url    string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProcCluster starts n node processes and waits until every node
// serves clients; the benchmark's stream creation rides out the cluster's
// first moments.
func startProcCluster(ctx context.Context, n int) (*procCluster, error) {
	if n < 3 {
		return nil, errors.New("a cluster of processes needs 3 or more nodes")
	}
	bin, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "platform-bench-procs-")
	if err != nil {
		return nil, err
	}
	pc := &procCluster{bin: bin, dir: dir, procs: map[string]*nodeProc{}}
	client, err := cluster.FreePorts("127.0.0.1", n)
	if err != nil {
		pc.Close()
		return nil, err
	}
	route, err := cluster.FreePorts("127.0.0.1", n)
	if err != nil {
		pc.Close()
		return nil, err
	}
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", route+j))
			}
		}
		name := fmt.Sprintf("p%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		body := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
max_payload: 8MB
jetstream { store_dir: %q, sync_interval: always }
cluster { name: bench, listen: 127.0.0.1:%d, routes: [%s] }
`, name, client+i, filepath.Join(dir, name), route+i, strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			pc.Close()
			return nil, err
		}
		p := &nodeProc{
			args: []string{"run", "--config", conf, "--services", "admin", "--http", "", "--log-level", "warn"},
			url:  fmt.Sprintf("nats://127.0.0.1:%d", client+i),
			log:  filepath.Join(dir, name+".log"),
		}
		pc.procs[name] = p
		pc.urls = append(pc.urls, p.url)
		if err := pc.start(p); err != nil {
			pc.Close()
			return nil, err
		}
	}
	for name, p := range pc.procs {
		if err := pc.waitServing(ctx, name, p); err != nil {
			pc.Close()
			return nil, err
		}
	}
	return pc, nil
}

// URL is the client URL list of the cluster.
func (pc *procCluster) URL() string { return strings.Join(pc.urls, ",") }

func (pc *procCluster) start(p *nodeProc) error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(pc.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = childAttr()
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s %s: %w", pc.bin, strings.Join(p.args, " "), err)
	}
	p.exited = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return nil
}

// waitServing waits until the node answers a NATS client.
func (pc *procCluster) waitServing(ctx context.Context, name string, p *nodeProc) error {
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("node %s exited (log: %s)", name, p.log)
		default:
		}
		nc, err := nats.Connect(p.url, nats.Timeout(time.Second), nats.NoReconnect())
		if err == nil {
			nc.Close()
			return nil
		}
		if serr := jsapi.Sleep(ctx, 50*time.Millisecond); serr != nil {
			return fmt.Errorf("node %s not serving (log: %s): %w", name, p.log, err)
		}
	}
}

func (pc *procCluster) node(name string) (*nodeProc, error) {
	p, ok := pc.procs[name]
	if !ok {
		return nil, fmt.Errorf("%s is not a node this benchmark started", name)
	}
	return p, nil
}

// Kind names the fault: the node's process is killed.
func (pc *procCluster) Kind() string { return "kill" }

// Stop kills the node's process with SIGKILL and waits until it is gone.
func (pc *procCluster) Stop(name string) error {
	p, err := pc.node(name)
	if err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// Restart starts the node's process again on its storage.
func (pc *procCluster) Restart(ctx context.Context, name string) error {
	p, err := pc.node(name)
	if err != nil {
		return err
	}
	if err := pc.start(p); err != nil {
		return err
	}
	return pc.waitServing(ctx, name, p)
}

// Close ends every process it started (SIGTERM, then SIGKILL after 10 s)
// and removes their storage.
func (pc *procCluster) Close() {
	for _, p := range pc.procs {
		if p.cmd == nil || p.exited == nil {
			continue
		}
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	os.RemoveAll(pc.dir)
}
