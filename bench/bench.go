// Package bench holds what every platform benchmark shares: a latency
// recorder with percentiles, the result row printed as a table or JSON and
// a progress bar. It links no server; the cluster a benchmark runs against
// is in bench/target.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Result is one benchmark's figures. Extra carries figures particular to a
// benchmark (compression ratio, abort rate, ...).
type Result struct {
	Name         string             `json:"name"`
	Events       int64              `json:"events"`
	Seconds      float64            `json:"seconds"`
	EventsPerSec float64            `json:"events_per_sec"`
	P50MS        float64            `json:"p50_ms"`
	P95MS        float64            `json:"p95_ms"`
	P99MS        float64            `json:"p99_ms"`
	Extra        map[string]float64 `json:"extra,omitempty"`
}

// Finish fills the rate and percentiles from the events counted, the
// elapsed time and the recorded latencies.
func (r *Result) Finish(events int64, elapsed time.Duration, lat *Latencies) {
	r.Events = events
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.EventsPerSec = float64(events) / r.Seconds
	}
	if lat != nil {
		r.P50MS, r.P95MS, r.P99MS = lat.Percentile(50), lat.Percentile(95), lat.Percentile(99)
	}
}

// Latencies records durations from many goroutines.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one latency.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Len returns how many latencies were recorded.
func (l *Latencies) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// Percentile returns the p-th percentile in milliseconds (nearest rank).
func (l *Latencies) Percentile(p float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	if !slices.IsSorted(l.d) {
		slices.Sort(l.d)
	}
	idx := int(p/100*float64(len(l.d))+0.999999) - 1
	idx = max(0, min(idx, len(l.d)-1))
	return float64(l.d[idx].Nanoseconds()) / 1e6
}

// Print writes results as one JSON object per line when asJSON is set
// (a single result is a single object), else as an aligned table.
func Print(w io.Writer, asJSON bool, results ...Result) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "bench\tevents\tseconds\tevents/s\tp50 ms\tp95 ms\tp99 ms\textra")
	for _, r := range results {
		var extra []string
		keys := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			extra = append(extra, fmt.Sprintf("%s=%.4g", k, r.Extra[k]))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.3f\t%.3f\t%.3f\t%s\n",
			r.Name, r.Events, r.Seconds, r.EventsPerSec, r.P50MS, r.P95MS, r.P99MS, strings.Join(extra, " "))
	}
	return tw.Flush()
}

// Progress draws a one-line progress bar on w (normally stderr) until Stop.
// A nil *Progress is valid and draws nothing.
type Progress struct {
	name  string
	total int64
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	w     io.Writer
}

// NewProgress starts a progress bar for total units; w nil disables it.
func NewProgress(w io.Writer, name string, total int64) *Progress {
	if w == nil {
		return nil
	}
	p := &Progress{name: name, total: total, stop: make(chan struct{}), w: w}
	p.wg.Add(1)
	go p.loop()
	return p
}

// Add counts n more units done.
func (p *Progress) Add(n int64) {
	if p != nil {
		p.done.Add(n)
	}
}

func (p *Progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.draw()
			fmt.Fprintln(p.w)
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *Progress) draw() {
	const width = 30
	done := p.done.Load()
	frac := 1.0
	if p.total > 0 {
		frac = min(1, float64(done)/float64(p.total))
	}
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r%-28s [%s%s] %3.0f%% %d/%d", p.name, strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100, done, p.total)
}

// Stop ends the bar.
func (p *Progress) Stop() {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
}
