package detectorbench

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector"
	"github.com/platform/platform/services/detector/accrual"
	"github.com/platform/platform/streams"
)

func benchTable(b *testing.B) *accrual.Table {
	b.Helper()
	o := detector.DefaultOptions()
	o.Seed = 1
	tab, err := accrual.NewTable(o.Options, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return tab
}

// BenchmarkIngest is one heartbeat through subject parsing, decoding, the
// table and the predictor, over 10,000 instances.
func BenchmarkIngest(b *testing.B) {
	tab := benchTable(b)
	const n = 10000
	subjects := make([]string, n)
	for i := range subjects {
		subjects[i] = streams.HeartbeatSubject("bench", "i"+itoa(i))
	}
	body, _ := json.Marshal(service.Load{Seq: 1, IntervalMS: 1000, CPU: 0.3, Mem: 0.5, LatencyMS: 10, P99MS: 40, ErrorRate: 0.001, RPS: 100})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := detector.Ingest(tab, subjects[i%n], nil, body, time.Duration(i)*100*time.Microsecond); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkDecodeHeartbeat(b *testing.B) {
	body := []byte(`{"seq":1,"interval_ms":1000,"cpu":0.31,"mem":0.52,"latency_ms":12,"p99_ms":40,"error_rate":0.01,"rps":120,"leaving":false}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := service.DecodeHeartbeat(nil, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTick10k is one evaluation of 10,000 alive instances.
func BenchmarkTick10k(b *testing.B) {
	tab := benchTable(b)
	for i := range 10000 {
		tab.Heartbeat("bench", "i"+itoa(i), accrual.Load{Seq: 1, IntervalMS: 1000}, 0)
	}
	tab.Tick(0, true, 1<<30)
	b.ReportAllocs()
	now := time.Duration(0)
	for b.Loop() {
		now += time.Millisecond
		tab.Tick(now, true, 200)
	}
}

// BenchmarkEvaluateMixed plays a 50-instance, 20 s mixed trace into
// ours.
func BenchmarkEvaluateMixed(b *testing.B) {
	tr := generateMixed(TraceOptions{Instances: 50, Duration: 20 * time.Second, Interval: 100 * time.Millisecond, Seed: 1})
	opts := EvalOptions{Trace: tr.opts}
	opts.setDefaults()
	for b.Loop() {
		d, err := newOurs(opts, len(tr.instances), nil)
		if err != nil {
			b.Fatal(err)
		}
		play(tr, d, opts.Tick, nil)
	}
}
