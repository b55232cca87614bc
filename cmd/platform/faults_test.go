package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// proc is one `platform run --config` process of the fault suite.
type proc struct {
	name   string
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
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies too
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// ready reports whether /readyz answers 200, or why not.
func (p *proc) ready() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		return fmt.Errorf("process %s exited: %v", p.name, err)
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
			b.WriteString(sc.Text() + "; ")
		}
		return fmt.Errorf("%s /readyz %d: %s", p.name, resp.StatusCode, b.String())
	}
	return nil
}

func (p *proc) tail(t *testing.T) {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("last lines of %s:\n%s", p.log, strings.Join(lines[max(0, len(lines)-15):], "\n"))
}

// chaosCluster is three platform processes, one node each from its own
// config file, whose route links run through proxies the suite can cut.
type chaosCluster struct {
	bin   string
	procs []*proc
	urls  []string
	// links[i][j] carries the route node i dials to node j.
	links [][]*linkProxy
}

// startChaosCluster writes three node configs whose routes point at
// per-link proxies and starts the processes. Every node advertises an
// unreachable route address, so no node learns another's real route port
// from gossip and dials it around the proxies.
func startChaosCluster(t *testing.T) *chaosCluster {
	bin := buildBinary(t)
	dir := t.TempDir()
	client := clustertest.FreePortRange(t, 3)
	route := clustertest.FreePortRange(t, 3)
	httpPort := clustertest.FreePortRange(t, 3)
	cl := &chaosCluster{bin: bin, links: make([][]*linkProxy, 3)}
	for i := range 3 {
		cl.links[i] = make([]*linkProxy, 3)
		for j := range 3 {
			if i != j {
				cl.links[i][j] = newLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", route+j))
			}
		}
	}
	for i := range 3 {
		var routes []string
		for j := range 3 {
			if i != j {
				routes = append(routes, "nats-route://"+cl.links[i][j].Addr())
			}
		}
		conf := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, `server_name: platform-%d
listen: 127.0.0.1:%d
max_payload: 8MB
jetstream { store_dir: %q, sync_interval: always }
cluster { name: platform, listen: 127.0.0.1:%d, advertise: "127.0.0.1:1", routes: [%s] }
`, i+1, client+i, filepath.Join(dir, fmt.Sprintf("n%d", i+1)), route+i, strings.Join(routes, ", ")), 0o600))
		cl.procs = append(cl.procs, &proc{
			name: fmt.Sprintf("platform-%d", i+1),
			args: []string{"run", "--config", conf, "--http", fmt.Sprintf("127.0.0.1:%d", httpPort+i), "--heartbeat", "200ms", "--log-format", "json"},
			http: fmt.Sprintf("127.0.0.1:%d", httpPort+i),
			log:  filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
		})
		cl.urls = append(cl.urls, fmt.Sprintf("nats://127.0.0.1:%d", client+i))
	}
	t.Cleanup(func() {
		for _, p := range cl.procs {
			if p.cmd != nil && p.cmd.ProcessState == nil {
				p.kill()
			}
		}
	})
	for _, p := range cl.procs {
		p.start(t, bin)
	}
	return cl
}

// waitReady waits until every process answers /readyz 200.
func (cl *chaosCluster) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, p := range cl.procs {
		for {
			err := p.ready()
			if err == nil {
				break
			}
			if strings.Contains(err.Error(), "exited") || time.Now().After(deadline) {
				for _, q := range cl.procs {
					q.tail(t)
				}
				t.Fatalf("not ready within %s: %v", d, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// partition cuts node i off from the other two, both directions.
func (cl *chaosCluster) partition(i int, cut bool) {
	for j := range 3 {
		if j == i {
			continue
		}
		for _, l := range []*linkProxy{cl.links[i][j], cl.links[j][i]} {
			if cut {
				l.Cut()
			} else {
				l.Heal()
			}
		}
	}
}

// eventsLeader returns the index of the process whose node leads EVENTS.
func (cl *chaosCluster) eventsLeader(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	var leader int
	clustertest.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, streams.Events)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("EVENTS has no leader")
		}
		for i, p := range cl.procs {
			if p.name == info.Cluster.Leader {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("EVENTS leader %q is none of the processes", info.Cluster.Leader)
	})
	return leader
}

// outcomes records when a workload's requests succeeded and failed.
type outcomes struct {
	mu       sync.Mutex
	ok, fail []time.Time
}

func (o *outcomes) add(ok bool) {
	now := time.Now()
	o.mu.Lock()
	if ok {
		o.ok = append(o.ok, now)
	} else {
		o.fail = append(o.fail, now)
	}
	o.mu.Unlock()
}

// outage returns how long the workload was unavailable after from: from
// its first failed request to its first success after the last failed
// one (0 when nothing failed), and how many requests failed.
func (o *outcomes) outage(from time.Time) (time.Duration, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var first, last time.Time
	n := 0
	for _, f := range o.fail {
		if f.Before(from) {
			continue
		}
		if first.IsZero() {
			first = f
		}
		last = f
		n++
	}
	if n == 0 {
		return 0, 0
	}
	for _, s := range o.ok {
		if s.After(last) {
			return s.Sub(first), n
		}
	}
	return time.Since(first), n
}

// successSince reports whether a request succeeded after t.
func (o *outcomes) successSince(t time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.ok) > 0 && o.ok[len(o.ok)-1].After(t)
}

// Ingest refusals after which the event was certainly not stored: the
// service refused it before publishing, or JetStream answered no. Any
// other failure (a timeout, a retry deadline) leaves the outcome unknown.
var refusedForSure = map[string]bool{
	"rate_limited": true, "buffer_full": true, "too_large": true, "bad_request": true,
	"rejected": true, "storage_full": true, "invalid_subject": true, "empty": true,
}

// ledger is what the ingest clients know: every acknowledged and every
// certainly refused event id.
type ledger struct {
	mu      sync.Mutex
	acked   map[string]bool
	refused map[string]bool
	sent    int
}

// load runs the workloads until stop is closed: ingest clients sending
// requests with client-assigned ids (never resent: an unanswered event's
// fate is unknown), and bank clients moving money between accounts
// through txn.get and txn.commit.
type load struct {
	ingest, bank outcomes
	led          ledger
	round        int
}

const (
	bankAccounts = 10
	bankOpening  = 1000
)

func account(i int) string { return fmt.Sprintf("chaos.acct.%d", i) }

func (l *load) run(t *testing.T, urls []string, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	l.round++
	connect := func() *nats.Conn {
		nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
			nats.DisconnectErrHandler(func(*nats.Conn, error) {})) // faults disconnect on purpose
		require.NoError(t, err)
		return nc
	}
	for c := range 4 {
		nc := connect()
		wg.Go(func() {
			defer nc.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("r%d-c%d-%d", l.round, c, i)
				m := nats.NewMsg(streams.IngestSubject("chaos"))
				m.Data = []byte(`{"id":"` + id + `"}`)
				l.led.mu.Lock()
				l.led.sent++
				l.led.mu.Unlock()
				resp, err := nc.RequestMsg(m, 2*time.Second)
				switch {
				case err == nats.ErrNoResponders:
					l.led.mu.Lock()
					l.led.refused[id] = true // nobody received it
					l.led.mu.Unlock()
				case err != nil:
				default:
					if e := service.ParseError(service.JSON, resp.Data); e != nil {
						if r, _ := e.Fields["reason"].(string); refusedForSure[r] {
							l.led.mu.Lock()
							l.led.refused[id] = true
							l.led.mu.Unlock()
						}
						err = e
						break
					}
					var ack replicator.IngestAck
					if json.Unmarshal(resp.Data, &ack) == nil && ack.Seq > 0 {
						l.led.mu.Lock()
						l.led.acked[id] = true
						l.led.mu.Unlock()
					} else {
						err = fmt.Errorf("odd ack %q", resp.Data)
					}
				}
				l.ingest.add(err == nil)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	for range 2 {
		nc := connect()
		wg.Go(func() {
			defer nc.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := transfer(nc)
				l.bank.add(err == nil)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return &wg
}

// transfer moves a random amount between two random accounts. A conflict
// is an answer (the system works; another transfer won); only failures to
// answer count against availability.
func transfer(nc *nats.Conn) error {
	a, b := rand.IntN(bankAccounts), rand.IntN(bankAccounts-1)
	if b >= a {
		b++
	}
	vals, err := bankGet(nc, []string{account(a), account(b)})
	if err != nil {
		return err
	}
	va, vb := vals[account(a)], vals[account(b)]
	amount := 1 + rand.IntN(10)
	if va.n < amount {
		return nil
	}
	req, _ := json.Marshal(txn.CommitRequest{
		Reads:  map[string]uint64{account(a): va.rev, account(b): vb.rev},
		Writes: map[string]string{account(a): fmt.Sprint(va.n - amount), account(b): fmt.Sprint(vb.n + amount)},
	})
	resp, err := nc.Request(streams.TxnCommitSubject, req, 3*time.Second)
	if err != nil {
		return err
	}
	if e := service.ParseError(service.JSON, resp.Data); e != nil && e.Code != service.CodeConflict {
		return e
	}
	return nil
}

type balance struct {
	n   int
	rev uint64
}

func bankGet(nc *nats.Conn, keys []string) (map[string]balance, error) {
	req, _ := json.Marshal(map[string][]string{"keys": keys})
	resp, err := nc.Request(streams.TxnGetSubject, req, 3*time.Second)
	if err != nil {
		return nil, err
	}
	if e := service.ParseError(service.JSON, resp.Data); e != nil {
		return nil, e
	}
	var got txn.GetResponse
	if err := json.Unmarshal(resp.Data, &got); err != nil {
		return nil, err
	}
	out := map[string]balance{}
	for _, k := range keys {
		v := got.Values[k]
		if v == nil || v.Value == nil {
			return nil, fmt.Errorf("account %s missing", k)
		}
		var n int
		if _, err := fmt.Sscan(*v.Value, &n); err != nil {
			return nil, fmt.Errorf("account %s: %w", k, err)
		}
		out[k] = balance{n: n, rev: v.Revision}
	}
	return out, nil
}

// openBank creates the accounts with their opening balances, once.
func openBank(t *testing.T, nc *nats.Conn) {
	t.Helper()
	req := txn.CommitRequest{Reads: map[string]uint64{}, Writes: map[string]string{}}
	for i := range bankAccounts {
		req.Reads[account(i)] = 0
		req.Writes[account(i)] = fmt.Sprint(bankOpening)
	}
	b, _ := json.Marshal(req)
	clustertest.Eventually(t, 60*time.Second, func() error {
		resp, err := nc.Request(streams.TxnCommitSubject, b, 5*time.Second)
		if err != nil {
			return err
		}
		if e := service.ParseError(service.JSON, resp.Data); e != nil {
			return e
		}
		return nil
	})
}

// verify checks the invariants: every acknowledged event stored exactly
// once, no certainly refused event stored, the bank's total unchanged.
func verify(t *testing.T, nc *nats.Conn, js jetstream.JetStream, l *load) (acked, refused, stored int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Through the stream leader: a replica that was paused or cut off
	// may still lag, and would name an older last message.
	last, err := jsapi.GetMsg(ctx, nc, streams.Events, jsapi.GetRequest{LastBySubject: streams.EventSubject("chaos")}, jsapi.Leader)
	require.NoError(t, err)
	r, err := replicator.NewReader(ctx, js, replicator.WithFilter(streams.EventSubject("chaos")))
	require.NoError(t, err)
	defer r.Close()
	count := map[string]int{}
	for {
		ev, err := r.Next(ctx)
		require.NoError(t, err, "read back EVENTS up to seq %d", last.Seq)
		var body struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(ev.Data, &body))
		count[body.ID]++
		stored++
		if ev.Pos.Seq >= last.Seq && (ev.Pos.Count <= 1 || ev.Pos.Index == ev.Pos.Count-1) {
			break
		}
	}
	l.led.mu.Lock()
	defer l.led.mu.Unlock()
	for id := range l.led.acked {
		if count[id] != 1 {
			t.Errorf("acknowledged event %s stored %d times, want exactly once", id, count[id])
		}
	}
	for id := range l.led.refused {
		if count[id] != 0 {
			t.Errorf("refused event %s stored %d times", id, count[id])
		}
	}
	for id, n := range count {
		if n > 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	// Balances read through the leader of bucket STATE: strong reads.
	total := 0
	for i := range bankAccounts {
		m, err := jsapi.GetMsg(ctx, nc, streams.KVStream(streams.BucketState),
			jsapi.GetRequest{LastBySubject: streams.KVSubject(streams.BucketState, account(i))}, jsapi.Leader)
		require.NoError(t, err, "read %s", account(i))
		var n int
		_, err = fmt.Sscan(string(m.Data), &n)
		require.NoError(t, err, "%s = %q", account(i), m.Data)
		total += n
	}
	if total != bankAccounts*bankOpening {
		t.Errorf("bank total %d, want %d", total, bankAccounts*bankOpening)
	}
	return len(l.led.acked), len(l.led.refused), stored
}

// fault is one fault of the suite: inject starts it and returns what ends
// it; hold is how long it lasts.
type fault struct {
	name   string
	hold   time.Duration
	inject func(t *testing.T, cl *chaosCluster, leader int) (end func())
}

var faults = []fault{
	{"kill -9 the EVENTS leader's process, restart it", 0, func(t *testing.T, cl *chaosCluster, leader int) func() {
		cl.procs[leader].kill()
		return func() { cl.procs[leader].start(t, cl.bin) }
	}},
	{"SIGSTOP the EVENTS leader's process 5s, SIGCONT", 5 * time.Second, func(t *testing.T, cl *chaosCluster, leader int) func() {
		cl.procs[leader].signal(t, syscall.SIGSTOP)
		return func() { cl.procs[leader].signal(t, syscall.SIGCONT) }
	}},
	{"partition the EVENTS leader's node 10s, heal", 10 * time.Second, func(t *testing.T, cl *chaosCluster, leader int) func() {
		cl.partition(leader, true)
		return func() { cl.partition(leader, false) }
	}},
	{"kill -9 all three processes, restart all", 0, func(t *testing.T, cl *chaosCluster, _ int) func() {
		for _, p := range cl.procs {
			p.kill()
		}
		return func() {
			for _, p := range cl.procs {
				p.start(t, cl.bin)
			}
		}
	}},
}

// TestFaults runs three platform processes under ingest and bank load and
// injects each fault in turn; after each, every process must be back at
// /readyz 200 and the invariants hold. It prints each fault's outage per
// workload. The whole suite takes about 75 seconds on two cores, so
// `make test` runs it; `make chaos` runs it alone and prints the table.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three platform processes")
	}
	cl := startChaosCluster(t)
	start := time.Now()
	cl.waitReady(t, 120*time.Second)
	t.Logf("first start: every process ready in %s", time.Since(start).Round(100*time.Millisecond))

	nc, err := nats.Connect(strings.Join(cl.urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {}))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	openBank(t, nc)

	l := &load{led: ledger{acked: map[string]bool{}, refused: map[string]bool{}}}
	var table []string
	for _, f := range faults {
		stop := make(chan struct{})
		wg := l.run(t, cl.urls, stop)
		time.Sleep(2 * time.Second) // load before the fault
		leader := cl.eventsLeader(t, js)
		t0 := time.Now()
		end := f.inject(t, cl, leader)
		time.Sleep(f.hold)
		end()
		t1 := time.Now()
		cl.waitReady(t, 120*time.Second)
		readyIn := time.Since(t1)
		clustertest.Eventually(t, 60*time.Second, func() error {
			if !l.ingest.successSince(time.Now().Add(-time.Second)) || !l.bank.successSince(time.Now().Add(-time.Second)) {
				return fmt.Errorf("workloads not succeeding yet")
			}
			return nil
		})
		time.Sleep(time.Second)
		close(stop)
		wg.Wait()
		ingestOut, ingestFails := l.ingest.outage(t0)
		bankOut, bankFails := l.bank.outage(t0)
		acked, refused, stored := verify(t, nc, js, l)
		row := fmt.Sprintf("| %s | %s (%d failed) | %s (%d failed) | %s | %d acked, %d refused, %d stored |",
			f.name, ingestOut.Round(100*time.Millisecond), ingestFails, bankOut.Round(100*time.Millisecond), bankFails,
			readyIn.Round(100*time.Millisecond), acked, refused, stored)
		t.Log(row)
		table = append(table, row)
		if t.Failed() {
			for _, p := range cl.procs {
				p.tail(t)
			}
			t.FailNow()
		}
	}
	t.Logf("fault suite, %d processes, fsync always:\n| fault | ingest unavailable | bank unavailable | every /readyz 200 after the fault ended | events so far |\n| --- | --- | --- | --- | --- |\n%s",
		len(cl.procs), strings.Join(table, "\n"))
}
