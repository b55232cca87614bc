package detector

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/platform/platform/service"
)

func benchService(b *testing.B) *Service {
	b.Helper()
	o := DefaultOptions()
	o.Seed = 1
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := newService(o)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkIngest is one heartbeat through subject parsing, decoding, the
// table and the predictor, over 10,000 instances.
func BenchmarkIngest(b *testing.B) {
	s := benchService(b)
	const n = 10000
	subjects := make([]string, n)
	for i := range subjects {
		subjects[i] = "hb.bench.i" + itoa(i)
	}
	body, _ := json.Marshal(service.Load{Seq: 1, IntervalMS: 1000, CPU: 0.3, Mem: 0.5, LatencyMS: 10, P99MS: 40, ErrorRate: 0.001, RPS: 100})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.ingest(subjects[i%n], nil, body, int64(i)*int64(100*time.Microsecond))
		i++
	}
}

func BenchmarkDecodeHeartbeat(b *testing.B) {
	body := []byte(`{"seq":1,"interval_ms":1000,"cpu":0.31,"mem":0.52,"latency_ms":12,"p99_ms":40,"error_rate":0.01,"rps":120,"leaving":false}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeHeartbeat(nil, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTick10k is one evaluation of 10,000 alive instances.
func BenchmarkTick10k(b *testing.B) {
	s := benchService(b)
	for i := range 10000 {
		s.tab.heartbeat("bench", "i"+itoa(i), service.Load{Seq: 1, IntervalMS: 1000}, 0)
	}
	s.tab.tick(0, true, 1<<30)
	b.ReportAllocs()
	now := int64(0)
	for b.Loop() {
		now += int64(time.Millisecond)
		s.tab.tick(now, true, 200)
	}
}

// BenchmarkEvaluateSteady plays a 50-instance, 20 s steady trace into
// ours.
func BenchmarkEvaluateSteady(b *testing.B) {
	tr := generateTrace(Steady, TraceOptions{Instances: 50, Duration: 20 * time.Second, Interval: 100 * time.Millisecond, Seed: 1})
	opts := EvalOptions{Trace: tr.opts}
	opts.fill()
	for b.Loop() {
		run(tr, newOurs(opts, len(tr.instances)), opts.Tick, nil)
	}
}
