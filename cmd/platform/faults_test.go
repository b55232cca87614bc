package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// proc is one `platform run --config` process of the fault suite.
type proc struct {
	args   []string
	http   string
	log    string
	cmd    *exec.Cmd
	exited chan error
}

func (p *proc) start(t *testing.T, bin string) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	require.NoError(t, p.cmd.Start())
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait(); f.Close() }()
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// ready reports whether /readyz answers 200, or why not.
func (p *proc) ready() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		return fmt.Errorf("process %v exited: %v", p.args[2], err)
	default:
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.http + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		return fmt.Errorf("%s /readyz %d: %s", p.http, resp.StatusCode, b.String())
	}
	return nil
}

func (p *proc) tail(t *testing.T) {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("last lines of %s:\n%s", p.log, strings.Join(lines[max(0, len(lines)-15):], "\n"))
}

// TestWholeClusterKillRestart runs three platform processes, one node each
// from its own config file, under request load on ingest.*; then kills all
// three with SIGKILL at once and restarts them at once, several times.
// Every process must come back to /readyz 200 without exiting, and every
// acknowledged event must be stored.
func TestWholeClusterKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three platform processes")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	client := clustertest.FreePortRange(t, 3)
	route := clustertest.FreePortRange(t, 3)
	httpPort := clustertest.FreePortRange(t, 3)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", route+i))
	}
	procs := make([]*proc, 3)
	var urls []string
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, `server_name: platform-%d
listen: 127.0.0.1:%d
max_payload: 8MB
jetstream { store_dir: %q, sync_interval: always }
cluster { name: platform, listen: 127.0.0.1:%d, routes: [%s] }
`, i+1, client+i, filepath.Join(dir, fmt.Sprintf("n%d", i+1)), route+i, strings.Join(routes, ", ")), 0o600))
		procs[i] = &proc{
			args: []string{"run", "--config", conf, "--http", fmt.Sprintf("127.0.0.1:%d", httpPort+i), "--heartbeat", "200ms", "--log-format", "json"},
			http: fmt.Sprintf("127.0.0.1:%d", httpPort+i),
			log:  filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
		}
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", client+i))
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p.cmd != nil && p.cmd.ProcessState == nil {
				p.kill()
			}
		}
	})
	waitAll := func(round int) time.Duration {
		start := time.Now()
		deadline := start.Add(120 * time.Second)
		for _, p := range procs {
			for {
				err := p.ready()
				if err == nil {
					break
				}
				if strings.Contains(err.Error(), "exited") || time.Now().After(deadline) {
					for _, q := range procs {
						q.tail(t)
					}
					t.Fatalf("round %d: %v", round, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return time.Since(start)
	}
	for _, p := range procs {
		p.start(t, bin)
	}
	t.Logf("first start: every process ready in %s", waitAll(0).Round(100*time.Millisecond))

	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		sent  atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("c%d-%d", c, i)
				m := nats.NewMsg("ingest.fault")
				m.Header.Set("Nats-Msg-Id", id)
				m.Data = []byte(`{"id":"` + id + `"}`)
				sent.Add(1)
				resp, err := nc.RequestMsg(m, 2*time.Second)
				if err != nil || resp.Header.Get("Nats-Service-Error-Code") != "" {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				var ack struct {
					Seq uint64 `json:"seq"`
				}
				if json.Unmarshal(resp.Data, &ack) == nil && ack.Seq > 0 {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		})
	}

	const rounds = 3
	for round := 1; round <= rounds; round++ {
		time.Sleep(time.Second) // load between the faults
		for _, p := range procs {
			p.kill()
		}
		for _, p := range procs {
			p.start(t, bin)
		}
		t.Logf("round %d: kill -9 of all three, restart of all three: every process ready in %s",
			round, waitAll(round).Round(100*time.Millisecond))
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked, "no event was acknowledged")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := replicator.NewReader(ctx, js, replicator.WithFilter(streams.EventSubject("fault")))
	require.NoError(t, err)
	defer r.Close()
	stored := map[string]bool{}
	for len(stored) < len(acked) {
		ev, err := r.Next(ctx)
		require.NoError(t, err, "read back: %d of %d acknowledged events found", len(stored), len(acked))
		var body struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(ev.Data, &body))
		if acked[body.ID] {
			stored[body.ID] = true
		}
	}
	t.Logf("%d requests sent, %d acknowledged, every acknowledged event stored", sent.Load(), len(acked))
}
