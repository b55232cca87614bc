package service

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Load is one heartbeat's view of an instance's load, over the interval
// since the previous heartbeat. It is also the heartbeat body (the detector
// contract): every field is optional for senders other than the platform.
type Load struct {
	Seq        uint64  `json:"seq"`
	IntervalMS int64   `json:"interval_ms"`
	CPU        float64 `json:"cpu"`
	Mem        float64 `json:"mem"`
	LatencyMS  float64 `json:"latency_ms"`
	P99MS      float64 `json:"p99_ms"`
	ErrorRate  float64 `json:"error_rate"`
	RPS        float64 `json:"rps"`
	InFlight   int64   `json:"in_flight"`
	Leaving    bool    `json:"leaving"`
}

// maxSamples bounds the latency samples kept per heartbeat interval; past
// it, samples replace earlier ones at random positions (reservoir sampling)
// so the p99 stays representative at any request rate.
const maxSamples = 2048

// loadTracker accumulates request figures between two heartbeats.
type loadTracker struct {
	inFlight atomic.Int64

	mu       sync.Mutex
	requests int64
	errors   int64
	sum      time.Duration
	samples  []time.Duration
	seen     int64
	rng      uint64

	lastCPU  time.Duration
	lastTick time.Time
}

func newLoadTracker() *loadTracker {
	return &loadTracker{lastCPU: processCPU(), lastTick: time.Now(), rng: uint64(time.Now().UnixNano()) | 1}
}

func (t *loadTracker) observe(d time.Duration, failed bool) {
	t.mu.Lock()
	t.requests++
	if failed {
		t.errors++
	}
	t.sum += d
	t.seen++
	if len(t.samples) < maxSamples {
		t.samples = append(t.samples, d)
	} else {
		// xorshift: cheap and good enough to pick a slot.
		t.rng ^= t.rng << 13
		t.rng ^= t.rng >> 7
		t.rng ^= t.rng << 17
		if j := int64(t.rng % uint64(t.seen)); j < maxSamples {
			t.samples[j] = d
		}
	}
	t.mu.Unlock()
}

// snapshot returns the load since the previous snapshot and starts a new
// interval.
func (t *loadTracker) snapshot(now time.Time) Load {
	t.mu.Lock()
	requests, errs, sum := t.requests, t.errors, t.sum
	samples := t.samples
	t.requests, t.errors, t.sum, t.seen = 0, 0, 0, 0
	t.samples = make([]time.Duration, 0, len(samples))
	elapsed := now.Sub(t.lastTick)
	t.lastTick = now
	cpu := processCPU()
	cpuUsed := cpu - t.lastCPU
	t.lastCPU = cpu
	t.mu.Unlock()

	l := Load{InFlight: t.inFlight.Load(), Mem: memoryFraction()}
	if elapsed > 0 {
		l.RPS = float64(requests) / elapsed.Seconds()
		// Getrusage counts in scheduler ticks, so over a short interval a
		// process busy on every core can read a little above 1; the
		// figure is a share, and receivers refuse one above 1.
		l.CPU = min(1, max(0, cpuUsed.Seconds()/elapsed.Seconds()/float64(runtime.NumCPU())))
	}
	if requests > 0 {
		l.ErrorRate = float64(errs) / float64(requests)
		l.LatencyMS = float64(sum.Microseconds()) / 1000 / float64(requests)
	}
	if len(samples) > 0 {
		slices.Sort(samples)
		idx := (len(samples)*99 + 99) / 100
		l.P99MS = float64(samples[min(idx, len(samples))-1].Microseconds()) / 1000
	}
	return l
}

// processCPU returns the user+system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var totalMemory = sync.OnceValue(func() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
})

// memoryFraction returns the process's memory from the Go runtime's view as
// a fraction of the machine's memory (0 where the total is unknown).
func memoryFraction() float64 {
	total := totalMemory()
	if total == 0 {
		return 0
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.Sys-ms.HeapReleased) / float64(total)
}
