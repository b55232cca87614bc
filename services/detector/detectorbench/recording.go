package detectorbench

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/platform/platform/services/detector/accrual"
)

// Recording is real heartbeat timing: when each heartbeat of live
// instances reached the detector's subscription, and when each instance's
// process lived, saved as a JSON file and replayed like a generated trace.
type Recording struct {
	// Name says what was recorded (it names the rows of the report).
	Name string `json:"name"`
	// IntervalMS is the instances' heartbeat interval.
	IntervalMS int64 `json:"interval_ms"`
	// DurationMS is how long the recording ran.
	DurationMS int64 `json:"duration_ms"`
	// Instances are the recorded instances.
	Instances []RecordedInstance `json:"instances"`
}

// RecordedInstance is one instance's heartbeats and lives.
type RecordedInstance struct {
	// Key is the instance's <service>.<instance>.
	Key string `json:"key"`
	// Class says what was done to the instance's process or path.
	Class Class `json:"class"`
	// Arrivals are the heartbeats' arrival times, ms since the recording
	// started, in arrival order; Seqs their sequence numbers.
	Arrivals []float64 `json:"arrivals_ms"`
	Seqs     []uint64  `json:"seqs"`
	// Lives are when its processes ran.
	Lives []RecordedLife `json:"lives"`
	// Stalls are when its process was stopped (SIGSTOP then SIGCONT), ms:
	// [start, end).
	Stalls [][2]float64 `json:"stalls_ms,omitempty"`
}

// RecordedLife is one process's life, ms since the recording started:
// [Start, End), End -1 for a process that outlived the recording. A
// process killed (SIGKILL) closed its connection; one stopped for good
// (HostLost) went silent with its connection open, as a lost host does.
type RecordedLife struct {
	StartMS  float64 `json:"start_ms"`
	EndMS    float64 `json:"end_ms"`
	HostLost bool    `json:"host_lost,omitempty"`
}

// liveRecording is 60 s of six processes of ten instances each, recorded
// on one machine by platform bench detector-record.
//
//go:embed recordings/live.json
var liveRecording []byte

// LiveRecording returns the recording shipped with the benchmark.
func LiveRecording() (*Recording, error) {
	return decodeRecording("recordings/live.json", liveRecording)
}

// ReadRecording reads a recording saved by WriteTo.
func ReadRecording(path string) (*Recording, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read recording: %w", err)
	}
	return decodeRecording(path, b)
}

func decodeRecording(name string, b []byte) (*Recording, error) {
	var r Recording
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read recording %s: %w", name, err)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("read recording %s: %w", name, err)
	}
	if r.Name == "" {
		r.Name = filepath.Base(name)
	}
	return &r, nil
}

// WriteTo writes the recording as JSON.
func (r *Recording) WriteTo(w io.Writer) (int64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("write recording: %w", err)
	}
	n, err := w.Write(b)
	return int64(n), err
}

func (r *Recording) validate() error {
	if r.IntervalMS <= 0 || r.DurationMS <= 0 {
		return fmt.Errorf("interval %d ms and duration %d ms must be positive", r.IntervalMS, r.DurationMS)
	}
	for _, in := range r.Instances {
		if len(in.Arrivals) != len(in.Seqs) {
			return fmt.Errorf("%s: %d arrivals but %d sequences", in.Key, len(in.Arrivals), len(in.Seqs))
		}
		if !slices.IsSorted(in.Arrivals) {
			return fmt.Errorf("%s: arrivals out of order", in.Key)
		}
	}
	return nil
}

// trace turns the recording into a trace to replay.
func (r *Recording) trace() *trace {
	tr := &trace{name: r.Name, opts: TraceOptions{
		Instances: len(r.Instances), Duration: time.Duration(r.DurationMS) * time.Millisecond,
		Interval: time.Duration(r.IntervalMS) * time.Millisecond,
	}}
	ns := func(ms float64) int64 { return int64(ms * 1e6) }
	for _, ri := range r.Instances {
		in := &simInstance{key: ri.Key, class: ri.Class, rtt: func(int64) time.Duration { return 400 * time.Microsecond }}
		for _, l := range ri.Lives {
			end := int64(-1)
			if l.EndMS >= 0 {
				end = ns(l.EndMS)
			}
			in.lives = append(in.lives, incarnation{start: ns(l.StartMS), end: end, hostLost: l.HostLost})
		}
		for _, s := range ri.Stalls {
			in.stalls = append(in.stalls, [2]int64{ns(s[0]), ns(s[1])})
		}
		for k, at := range ri.Arrivals {
			in.beats = append(in.beats, simBeat{at: ns(at), load: accrual.Load{Seq: ri.Seqs[k], IntervalMS: r.IntervalMS}})
		}
		tr.instances = append(tr.instances, in)
	}
	return tr
}

// classes returns the classes of the recorded instances, in order of
// first appearance.
func (r *Recording) classes() []Class {
	var out []Class
	for _, in := range r.Instances {
		if !slices.Contains(out, in.Class) {
			out = append(out, in.Class)
		}
	}
	return out
}
