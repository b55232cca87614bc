package detectorbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/streams"
)

// scaleService names the instances the senders heartbeat for.
const scaleService = "platform-scale"

// SenderOptions configure ServeSenders.
type SenderOptions struct {
	// URL is the NATS server.
	URL string
	// Instances is how many instances to heartbeat for.
	Instances int
	// Interval is each instance's heartbeat interval.
	Interval time.Duration
	// Conns is how many connections the heartbeats are spread over.
	Conns int
	// Out receives one line a second: "heartbeats N pings M" (totals).
	Out io.Writer
}

// ServeSenders heartbeats for opts.Instances instances, each once an
// interval at its own offset, and answers the detector's probes of them
// ($SRV.PING.platform-scale.<instance>) as their micro services would,
// until ctx is done.
func ServeSenders(ctx context.Context, opts SenderOptions) error {
	conns := make([]*nats.Conn, max(opts.Conns, 1))
	for i := range conns {
		nc, err := nats.Connect(opts.URL, nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("senders: connect: %w", err)
		}
		defer nc.Close()
		conns[i] = nc
	}
	var pings, beats atomic.Int64
	ping, err := micro.ControlSubject(micro.PingVerb, scaleService, "")
	if err != nil {
		return fmt.Errorf("senders: %w", err)
	}
	if _, err := conns[0].Subscribe(ping+".*", func(m *nats.Msg) {
		pings.Add(1)
		_ = m.Respond([]byte(`{"type":"io.nats.micro.v1.ping_response"}`))
	}); err != nil {
		return fmt.Errorf("senders: subscribe: %w", err)
	}
	subjects := make([]string, opts.Instances)
	for i := range subjects {
		subjects[i] = streams.HeartbeatSubject(scaleService, "i"+strconv.Itoa(i))
	}
	var wg sync.WaitGroup
	per := (opts.Instances + len(conns) - 1) / len(conns)
	for c, nc := range conns {
		lo, hi := c*per, min((c+1)*per, opts.Instances)
		wg.Go(func() {
			// Each connection sends its instances spread over the interval
			// in 10 ms slots.
			slots := max(1, int(opts.Interval/(10*time.Millisecond)))
			t := time.NewTicker(opts.Interval / time.Duration(slots))
			defer t.Stop()
			seq := uint64(0)
			for slot := 0; ; slot = (slot + 1) % slots {
				if slot == 0 {
					seq++
				}
				for i := lo + slot; i < hi; i += slots {
					l := service.Load{Seq: seq, IntervalMS: opts.Interval.Milliseconds(), CPU: 0.3, Mem: 0.4, LatencyMS: 5, P99MS: 20, RPS: 100}
					b, _ := json.Marshal(l)
					if nc.Publish(subjects[i], b) == nil {
						beats.Add(1)
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	if opts.Out != nil {
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					fmt.Fprintf(opts.Out, "heartbeats %d pings %d\n", beats.Load(), pings.Load())
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// ScaleIOOptions configure MeasureScaleIO.
type ScaleIOOptions struct {
	// Conn is a connection to the cluster the detector writes to (its
	// MEMBERS and DETECTOR provisioned); URL its client URLs.
	Conn *nats.Conn
	URL  string
	// Instances heartbeating (default 10,000) at Interval (default 1 s).
	Instances int
	Interval  time.Duration
	// Seconds measured once every instance is alive (default 30).
	Seconds int
	// SpawnDetector returns the command that runs one detector, with its
	// default options, against url. Required.
	SpawnDetector func(url string) *exec.Cmd
	// SpawnSenders returns the command that runs ServeSenders with opts
	// (its Out the process's standard output). Required.
	SpawnSenders func(opts SenderOptions) *exec.Cmd
	// Progress, when set, is called every measured second.
	Progress func()
}

// ScaleIOReport is what MeasureScaleIO found.
type ScaleIOReport struct {
	Instances int     `json:"instances"`
	Seconds   float64 `json:"seconds"`
	// Cores is the detector process's CPU time (user+system) over the
	// measured seconds: the share of a core it needs.
	Cores float64 `json:"cores"`
	// HeartbeatsPerSec were sent by the senders' process; ProbesPerSec
	// answered by it.
	HeartbeatsPerSec float64 `json:"heartbeats_per_sec"`
	ProbesPerSec     float64 `json:"probes_per_sec"`
	// WritesPerSec were stored in MEMBERS, TransitionsPerSec in DETECTOR.
	WritesPerSec      float64 `json:"member_writes_per_sec"`
	TransitionsPerSec float64 `json:"transitions_per_sec"`
	// Alive is how many instances the detector held alive at the end.
	Alive int `json:"alive"`
}

// MeasureScaleIO measures one detector in its own process on real I/O:
// heartbeats arrive over the network from another process, the detector
// probes the instances (which that process answers) and writes MEMBERS
// and DETECTOR on the cluster. It waits until the detector holds every
// instance alive, then measures for opts.Seconds. Linux only: it reads
// the detector's CPU time from /proc.
func MeasureScaleIO(ctx context.Context, opts ScaleIOOptions) (ScaleIOReport, error) {
	if opts.SpawnDetector == nil || opts.SpawnSenders == nil || opts.Conn == nil {
		return ScaleIOReport{}, errors.New("scale: a connection and both spawn functions are required")
	}
	opts.Instances = positiveOr(opts.Instances, 10000)
	opts.Seconds = positiveOr(opts.Seconds, 30)
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	det, err := startScaleDetector(ctx, opts)
	if err != nil {
		return ScaleIOReport{}, fmt.Errorf("scale: %w", err)
	}
	defer stopProcess(det)
	snd, sent, err := startScaleSenders(ctx, opts)
	if err != nil {
		return ScaleIOReport{}, fmt.Errorf("scale: %w", err)
	}
	defer stopProcess(snd)
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return ScaleIOReport{}, fmt.Errorf("scale: %w", err)
	}
	m := scaleMeter{js: js, pid: det.Process.Pid, sent: sent}
	// The joins are published before the steady state is measured: every
	// instance's record in MEMBERS and its transition in DETECTOR.
	if err := waitFor(ctx, 300*time.Second, func() error { return m.joined(ctx, opts.Instances) }); err != nil {
		return ScaleIOReport{}, fmt.Errorf("scale: %w", err)
	}
	before, err := m.snap(ctx)
	if err != nil {
		return ScaleIOReport{}, fmt.Errorf("scale: %w", err)
	}
	start := time.Now()
	for range opts.Seconds {
		select {
		case <-ctx.Done():
			return ScaleIOReport{}, ctx.Err()
		case <-time.After(time.Second):
		}
		if opts.Progress != nil {
			opts.Progress()
		}
	}
	after, err := m.snap(ctx)
	if err != nil {
		return ScaleIOReport{}, fmt.Errorf("scale: %w", err)
	}
	secs := time.Since(start).Seconds()
	alive, err := aliveCount(ctx, opts.Conn)
	if err != nil {
		return ScaleIOReport{}, fmt.Errorf("scale: %w", err)
	}
	return ScaleIOReport{
		Instances: opts.Instances, Seconds: secs,
		Cores:            (after.cpu - before.cpu).Seconds() / secs,
		HeartbeatsPerSec: float64(after.beats-before.beats) / secs, ProbesPerSec: float64(after.pings-before.pings) / secs,
		WritesPerSec: float64(after.members-before.members) / secs, TransitionsPerSec: float64(after.transitions-before.transitions) / secs,
		Alive: alive,
	}, nil
}

// startScaleDetector starts the detector process and waits until it is
// the active instance.
func startScaleDetector(ctx context.Context, opts ScaleIOOptions) (*exec.Cmd, error) {
	det := opts.SpawnDetector(opts.URL)
	det.Stdout, det.Stderr = io.Discard, io.Discard
	if err := det.Start(); err != nil {
		return nil, fmt.Errorf("start detector: %w", err)
	}
	if err := waitFor(ctx, 60*time.Second, func() error {
		st, err := status(ctx, opts.Conn)
		if err == nil && !st.Active {
			err = errors.New("detector not active yet")
		}
		return err
	}); err != nil {
		stopProcess(det)
		return nil, fmt.Errorf("detector: %w", err)
	}
	return det, nil
}

// sentCount is what the senders process last reported sending.
type sentCount struct {
	sync.Mutex
	beats, pings int64
}

// startScaleSenders starts the senders process, follows the counts it
// prints, and waits until the detector holds every instance alive.
func startScaleSenders(ctx context.Context, opts ScaleIOOptions) (*exec.Cmd, *sentCount, error) {
	snd := opts.SpawnSenders(SenderOptions{URL: opts.URL, Instances: opts.Instances, Interval: opts.Interval, Conns: 8})
	out, err := snd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	snd.Stderr = io.Discard
	if err := snd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start senders: %w", err)
	}
	sent := &sentCount{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var b, p int64
			if _, err := fmt.Sscanf(sc.Text(), "heartbeats %d pings %d", &b, &p); err == nil {
				sent.Lock()
				sent.beats, sent.pings = b, p
				sent.Unlock()
			}
		}
	}()
	if err := waitFor(ctx, 120*time.Second, func() error {
		alive, err := aliveCount(ctx, opts.Conn)
		if err == nil && alive < opts.Instances {
			err = fmt.Errorf("%d of %d instances alive", alive, opts.Instances)
		}
		return err
	}); err != nil {
		stopProcess(snd)
		return nil, nil, err
	}
	return snd, sent, nil
}

// scaleMeter reads the figures the scale measurement compares between
// its start and its end.
type scaleMeter struct {
	js   jetstream.JetStream
	pid  int
	sent *sentCount
}

// scaleSnapshot is the detector's CPU time, the last sequences of
// MEMBERS and DETECTOR, and the senders' counts at one moment.
type scaleSnapshot struct {
	cpu                  time.Duration
	members, transitions uint64
	beats, pings         int64
}

func (m scaleMeter) state(ctx context.Context, stream string, opts ...jetstream.StreamInfoOpt) (jetstream.StreamState, error) {
	s, err := m.js.Stream(ctx, stream)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	info, err := s.Info(ctx, opts...)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

// joined returns nil once MEMBERS holds a record and DETECTOR a join of
// each of n instances.
func (m scaleMeter) joined(ctx context.Context, n int) error {
	mem, err := m.state(ctx, streams.KVStream(streams.BucketMembers),
		jetstream.WithSubjectFilter(streams.KVSubject(streams.BucketMembers, scaleService+".*")))
	if err != nil {
		return err
	}
	det, err := m.state(ctx, streams.Detector,
		jetstream.WithSubjectFilter(streams.DetectorSubject(string(membership.Alive), scaleService, "*")))
	if err != nil {
		return err
	}
	if len(mem.Subjects) < n || len(det.Subjects) < n {
		return fmt.Errorf("MEMBERS holds %d records and DETECTOR %d joins of %d", len(mem.Subjects), len(det.Subjects), n)
	}
	return nil
}

func (m scaleMeter) snap(ctx context.Context) (scaleSnapshot, error) {
	var s scaleSnapshot
	var err error
	if s.cpu, err = processCPUOf(m.pid); err != nil {
		return s, err
	}
	mem, err := m.state(ctx, streams.KVStream(streams.BucketMembers))
	if err != nil {
		return s, err
	}
	det, err := m.state(ctx, streams.Detector)
	if err != nil {
		return s, err
	}
	s.members, s.transitions = mem.LastSeq, det.LastSeq
	m.sent.Lock()
	s.beats, s.pings = m.sent.beats, m.sent.pings
	m.sent.Unlock()
	return s, nil
}

// Result returns the report as a bench row.
func (r ScaleIOReport) Result() bench.Result {
	return bench.Result{
		Name:   fmt.Sprintf("detector/scale-io-%d", r.Instances),
		Events: int64(r.HeartbeatsPerSec * r.Seconds), Seconds: r.Seconds, EventsPerSec: r.HeartbeatsPerSec,
		Extra: map[string]float64{
			"cores": r.Cores, "probes_per_sec": r.ProbesPerSec, "member_writes_per_sec": r.WritesPerSec,
			"transitions_per_sec": r.TransitionsPerSec, "alive": float64(r.Alive),
		},
	}
}

// positiveOr returns v when it is positive, else def: a zero or negative
// setting takes its default.
func positiveOr[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func status(ctx context.Context, nc *nats.Conn) (detector.StatusResponse, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, streams.MembersStatusSubject, nil)
	if err != nil {
		return detector.StatusResponse{}, err
	}
	var st detector.StatusResponse
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return detector.StatusResponse{}, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// aliveCount asks the detector how many of the senders' instances it
// holds alive.
func aliveCount(ctx context.Context, nc *nats.Conn) (int, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := json.Marshal(map[string]any{"service": scaleService, "state": membership.Alive, "limit": 1})
	m, err := nc.RequestWithContext(rctx, streams.MembersListSubject, req)
	if err != nil {
		return 0, fmt.Errorf("members: %w", err)
	}
	var r detector.MembersResponse
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return 0, fmt.Errorf("members: %w", err)
	}
	return r.Count, nil
}

func waitFor(ctx context.Context, d time.Duration, cond func() error) error {
	end := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("not within %s: %w", d, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopProcess ends a process this package started: SIGTERM, then SIGKILL
// after five seconds.
func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// processCPUOf returns the user+system CPU time of process pid, from
// /proc/<pid>/stat (clock ticks of 10 ms).
func processCPUOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("process cpu: %w", err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("process cpu: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("process cpu: %w", err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
