package detectorbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// Classes of recorded instances, named after what was done to their
// process or path.
const (
	// ClassContended: a process whose heartbeats compete for one thread
	// with busy goroutines.
	ClassContended Class = "contended"
	// ClassPaused: a process stopped with SIGSTOP now and then, for the
	// GC class's heavy-tailed pause lengths, and resumed with SIGCONT.
	ClassPaused Class = "paused"
	// ClassDelayed: a process connected through a proxy that delays what
	// it sends (exponential, mean 15 ms; 3% of writes 100-400 ms more).
	ClassDelayed Class = "delayed"
)

// RecordOptions configure Record.
type RecordOptions struct {
	// Duration of the recording (default 60 s; deaths fall after 30 s
	// when it is 45 s or longer, so the evaluation's warm-up holds none).
	Duration time.Duration
	// Interval is every instance's heartbeat interval (default 100 ms).
	Interval time.Duration
	// PerProcess is how many instances each process runs (default 10).
	PerProcess int
	// Seed drives the pauses and the proxy's delays (default 1).
	Seed uint64
	// Spawn returns the command that runs ServeInstances with opts in a
	// new process. Required: the binary decides how (a subcommand, a test
	// binary's flag).
	Spawn func(opts InstanceOptions) *exec.Cmd
	// Progress, when set, is called every second.
	Progress func()
}

// recordedProcess is one process of a recording and its fate.
type recordedProcess struct {
	class   Class
	service string
	burners int
	proxied bool
	pauses  bool
	// dies at this fraction of the duration (0: lives on); lost: stopped
	// for good instead of killed.
	dies float64
	lost bool

	cmd         *exec.Cmd
	start, end  time.Duration
	stalls      [][2]time.Duration
	stopForever bool
}

// Record runs processes of heartbeating micro service instances against
// a NATS server of its own on 127.0.0.1 and records when each heartbeat
// arrives: a quiet process, one under CPU contention, one paused with
// SIGSTOP, one behind a delaying proxy; a quiet one killed (a crash), a
// quiet one stopped for good (a lost host), and the contended, paused and
// delayed ones die too, late in the recording. It kills every process it
// started before it returns.
func Record(ctx context.Context, opts RecordOptions) (*Recording, error) {
	if opts.Spawn == nil {
		return nil, errors.New("record: no way to spawn instance processes")
	}
	opts.setDefaults()
	srv, err := startRecordServer()
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	proxy, err := newDelayProxy(srv.Addr().String(), rng.Uint64())
	if err != nil {
		return nil, err
	}
	defer proxy.close()

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return nil, fmt.Errorf("record: connect: %w", err)
	}
	defer nc.Close()

	start := time.Now()
	rec := &recorder{start: start, byKey: map[string]*RecordedInstance{}}
	sub, err := nc.Subscribe(streams.HeartbeatPrefix+">", rec.heartbeat)
	if err != nil {
		return nil, fmt.Errorf("record: subscribe: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("record: flush: %w", err)
	}

	procs := recordedProcesses(opts.Duration)
	defer func() {
		for _, p := range procs {
			if p.cmd != nil && p.cmd.Process != nil {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	}()
	for _, p := range procs {
		url := srv.ClientURL()
		if p.proxied {
			url = "nats://" + proxy.addr()
		}
		p.cmd = opts.Spawn(InstanceOptions{URL: url, Service: p.service, Instances: opts.PerProcess, Interval: opts.Interval, Burners: p.burners})
		p.cmd.Stdout, p.cmd.Stderr = io.Discard, io.Discard
		p.start = time.Since(start)
		if err := p.cmd.Start(); err != nil {
			return nil, fmt.Errorf("record: start %s: %w", p.service, err)
		}
	}

	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	for _, p := range procs {
		seed := rng.Uint64()
		wg.Go(func() { p.run(ctx, start, opts.Duration, seed) })
	}
	if opts.Progress != nil {
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					opts.Progress()
				}
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	if err := sub.Unsubscribe(); err != nil {
		return nil, fmt.Errorf("record: unsubscribe: %w", err)
	}
	return rec.recording(procs, opts), nil
}

func (o *RecordOptions) setDefaults() {
	o.Duration = positiveOr(o.Duration, 60*time.Second)
	o.Interval = positiveOr(o.Interval, 100*time.Millisecond)
	o.PerProcess = max(o.PerProcess, 0)
	if o.PerProcess == 0 {
		o.PerProcess = 10
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
}

// startRecordServer starts the recording's own NATS server on a free
// loopback port.
func startRecordServer() (*server.Server, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("server not ready")
	}
	return srv, nil
}

// recordedProcesses is the plan of a recording of duration d: which
// processes run and when each dies, as a fraction of d. A recording of 45
// seconds or more lets the deaths come later, after a longer steady run.
func recordedProcesses(d time.Duration) []*recordedProcess {
	late := d >= 45*time.Second
	at := func(early, lateFrac float64) float64 {
		if late {
			return lateFrac
		}
		return early
	}
	return []*recordedProcess{
		{class: ClassQuiet, service: "rec-quiet"},
		{class: ClassContended, service: "rec-contended", burners: 4, dies: at(0.6, 0.70)},
		{class: ClassPaused, service: "rec-paused", pauses: true, dies: at(0.7, 0.80), lost: true},
		{class: ClassDelayed, service: "rec-delayed", proxied: true, dies: at(0.65, 0.75)},
		{class: ClassQuiet, service: "rec-crash", dies: at(0.5, 0.60)},
		{class: ClassQuiet, service: "rec-lost", dies: at(0.55, 0.65), lost: true},
	}
}

// run plays the process's fate: pauses, then its death.
func (p *recordedProcess) run(ctx context.Context, start time.Time, dur time.Duration, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	deadline := time.Duration(math.MaxInt64)
	if p.dies > 0 {
		deadline = time.Duration(p.dies * float64(dur))
	}
	sleepUntil := func(d time.Duration) bool {
		w := d - time.Since(start)
		if w <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(w)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	pid := p.cmd.Process.Pid
	for p.pauses {
		next := time.Since(start) + time.Duration(rng.ExpFloat64()*gcPauseEvery*float64(time.Millisecond))
		if next >= deadline || !sleepUntil(next) {
			break
		}
		pause := time.Duration(min(gcPauseMin*math.Pow(1-rng.Float64(), -1/gcPauseShape), gcPauseMax) * float64(time.Millisecond))
		from := time.Since(start)
		if syscall.Kill(pid, syscall.SIGSTOP) != nil {
			return
		}
		sleepUntil(min(from+pause, deadline))
		if time.Since(start) >= deadline && p.lost {
			p.end, p.stopForever = deadline, true
			p.stalls = append(p.stalls, [2]time.Duration{from, deadline})
			return
		}
		_ = syscall.Kill(pid, syscall.SIGCONT)
		p.stalls = append(p.stalls, [2]time.Duration{from, time.Since(start)})
	}
	if p.dies == 0 || !sleepUntil(deadline) {
		return
	}
	p.end = time.Since(start)
	if p.lost {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		p.stopForever = true
		return
	}
	_ = p.cmd.Process.Kill()
}

// recorder keeps the arrivals.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	byKey map[string]*RecordedInstance
}

func (r *recorder) heartbeat(m *nats.Msg) {
	at := float64(time.Since(r.start).Microseconds()) / 1000
	svc, inst, err := streams.ParseHeartbeatSubject(m.Subject)
	if err != nil {
		return
	}
	var l service.Load
	if json.Unmarshal(m.Data, &l) != nil || l.Leaving {
		return
	}
	key := svc + "." + inst
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.byKey[key]
	if in == nil {
		in = &RecordedInstance{Key: key}
		r.byKey[key] = in
	}
	in.Arrivals = append(in.Arrivals, math.Round(at*100)/100)
	in.Seqs = append(in.Seqs, l.Seq)
}

// recording assembles the file: each instance with its process's class,
// life and stalls.
func (r *recorder) recording(procs []*recordedProcess, opts RecordOptions) *Recording {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := func(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }
	out := &Recording{Name: "live", IntervalMS: opts.Interval.Milliseconds(), DurationMS: opts.Duration.Milliseconds()}
	keys := make([]string, 0, len(r.byKey))
	for k := range r.byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		in := r.byKey[k]
		for _, p := range procs {
			if !strings.HasPrefix(k, "platform-"+p.service+".") {
				continue
			}
			in.Class = p.class
			life := RecordedLife{StartMS: ms(p.start), EndMS: -1}
			if p.end > 0 {
				life.EndMS, life.HostLost = ms(p.end), p.stopForever
			}
			in.Lives = []RecordedLife{life}
			for _, s := range p.stalls {
				in.Stalls = append(in.Stalls, [2]float64{ms(s[0]), ms(s[1])})
			}
		}
		if in.Class != "" {
			out.Instances = append(out.Instances, *in)
		}
	}
	return out
}

// delayProxy forwards TCP connections to a server, delaying what clients
// send: each write waits an exponential delay (mean 15 ms), 3% of them
// 100-400 ms more, in order, as a slow path holds back what follows.
type delayProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	rng    *rand.Rand
	wg     sync.WaitGroup
	conns  []net.Conn
}

func newDelayProxy(target string, seed uint64) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("record: proxy: %w", err)
	}
	p := &delayProxy{ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, seed^1))}
	p.wg.Go(p.accept)
	return p, nil
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

func (p *delayProxy) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	ms := 2 + p.rng.ExpFloat64()*15
	if p.rng.Float64() < 0.03 {
		ms += 100 + 300*p.rng.Float64()
	}
	return time.Duration(ms * float64(time.Millisecond))
}

func (p *delayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(c, s); c.Close() })
		p.wg.Go(func() { p.slow(c, s); s.Close() })
	}
}

// slow copies from c to s, each read released after its delay and never
// before the one read earlier.
type chunk struct {
	b   []byte
	due time.Time
}

func (p *delayProxy) slow(c, s net.Conn) {
	q := make(chan chunk, 1024)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ch := range q {
			time.Sleep(time.Until(ch.due))
			if _, err := s.Write(ch.b); err != nil {
				for range q {
				}
				return
			}
		}
	})
	var last time.Time
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			due := time.Now().Add(p.delay())
			if due.Before(last) {
				due = last
			}
			last = due
			q <- chunk{b: slices.Clone(buf[:n]), due: due}
		}
		if err != nil {
			break
		}
	}
	close(q)
	wg.Wait()
}

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
