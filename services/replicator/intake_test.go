package replicator

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

// family sums the values of a counter or gauge family, by the value of
// label.
func family(t testing.TB, reg prometheus.Gatherer, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					key = lp.GetValue()
				}
			}
			out[key] += metricValue(m)
		}
	}
	return out
}

func metricValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// storedEvents counts the events stored on subject: an envelope's count,
// else one per message.
func storedEvents(t testing.TB, js jetstream.JetStream, subject string) int {
	t.Helper()
	ctx := clustertest.Context(t, time.Minute)
	s, err := js.Stream(ctx, streams.Events)
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	msgs := info.State.Subjects[subject]
	if msgs == 0 {
		return 0
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, HeadersOnly: true})
	require.NoError(t, err)
	it, err := cons.Messages()
	require.NoError(t, err)
	defer it.Stop()
	n := 0
	for range msgs {
		m, err := it.Next(jetstream.NextContext(ctx))
		require.NoError(t, err)
		c := 1
		if v := m.Headers().Get(streams.EnvelopeCountHeader); v != "" {
			c, err = strconv.Atoi(v)
			require.NoError(t, err)
		}
		n += c
	}
	return n
}

// TestBurstAccounted floods the ingest service with fire-and-forget events
// far beyond its buffer: every event sent must be stored or counted as
// dropped by reason, exactly, the client library's drops at the intake
// subscription's pending limits included. With events near 1 MiB the
// server's own limit on what it holds for the intake connection
// (max_pending) is at stake too: a connection cut there would lose what
// was queued on it, uncounted.
func TestBurstAccounted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sent   int
		size   int
		buffer int
		nodes  int
		// overflow: the burst must overflow the buffer, or the test
		// proves nothing. Large events test the server's limit instead,
		// with a buffer as large as the server holds for a connection.
		overflow bool
		opts     Options
	}{
		// One message per event and a shallow pipeline store slowly
		// enough for the burst to overflow even a slow sender.
		{"small events", 100_000, 128, 1 << 20, 1, true, Options{PerEvent: true, MaxInFlight: 4}},
		{"1 MiB events", 500, 1<<20 - 4096, 64 << 20, 3, false, Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.nodes)
			opts := tc.opts
			opts.Buffer = tc.buffer
			_, reg := startIngest(t, e, opts)
			nc := clustertest.Connect(t, e.c)
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = 'a' + byte(i%26)
			}
			for range tc.sent {
				require.NoError(t, nc.Publish(streams.IngestSubject("burst"), data))
			}
			require.NoError(t, nc.Flush())

			// Every event is handled or dropped once the intake is idle: wait
			// until the counts stop moving, then read what was stored.
			var last [4]float64
			stillSince := time.Now()
			clustertest.Eventually(t, 2*time.Minute, func() error {
				now := [4]float64{
					sum(family(t, reg, "platform_replicator_dropped_events_total", "reason")),
					sum(family(t, reg, "platform_replicator_events_in_total", "level")),
					sum(family(t, reg, "platform_replicator_batches_out_total", "")),
					sum(family(t, reg, "platform_replicator_retries_total", "")),
				}
				if now != last {
					last, stillSince = now, time.Now()
					return fmt.Errorf("still moving: dropped %.0f, accepted %.0f", now[0], now[1])
				}
				if time.Since(stillSince) < 3*time.Second {
					return fmt.Errorf("still for %s only", time.Since(stillSince))
				}
				return nil
			})
			stored := storedEvents(t, e.js, streams.EventSubject("burst"))
			dropped := family(t, reg, "platform_replicator_dropped_events_total", "reason")
			unaccounted := tc.sent - stored - int(sum(dropped))
			t.Logf("sent %d, stored %d, dropped %v, unaccounted %d", tc.sent, stored, dropped, unaccounted)
			if unaccounted != 0 {
				t.Errorf("unaccounted events: got %d, want 0 (sent %d, stored %d, dropped %v)", unaccounted, tc.sent, stored, dropped)
			}
			if tc.overflow && dropped[reasonSlowConsumer]+dropped[reasonBufferFull] == 0 {
				t.Errorf("the burst did not overflow the %d-byte buffer (dropped %v): the test proves nothing", tc.buffer, dropped)
			}
			if stored == 0 {
				t.Error("nothing stored")
			}
		})
	}
}

// BenchmarkIngestFireAndForget measures intake: b.N fire-and-forget events
// published at full speed through an ingest service on a 1-node cluster,
// until every one is accepted or dropped. Profile it with -cpuprofile.
func BenchmarkIngestFireAndForget(b *testing.B) {
	e := newEnv(b, 1)
	_, reg := startIngest(b, e, Options{})
	nc := clustertest.Connect(b, e.c)
	data := make([]byte, 128)
	subject := streams.IngestSubject("bench")
	b.ResetTimer()
	for range b.N {
		if err := nc.Publish(subject, data); err != nil {
			b.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		done := sum(family(b, reg, "platform_replicator_dropped_events_total", "reason")) +
			sum(family(b, reg, "platform_replicator_events_in_total", "level"))
		if done >= float64(b.N) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%.0f of %d events handled", done, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
