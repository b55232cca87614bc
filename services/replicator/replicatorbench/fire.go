package replicatorbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// idleFor is how long the ingest service's figures must stay still for
// the burst to count as drained: longer than any periodic report of
// client-side drops.
const idleFor = 3 * time.Second

// FireAndForget publishes o.Events fire-and-forget events to ingest.<topic>
// at full speed from one connection (as `nats bench pub` does: no waiting
// for anything), waits until the ingest service is idle, and accounts for
// every event: stored (read back from EVENTS), dropped by reason (from the
// service's metrics) and unaccounted (sent minus both, which must be 0).
// For scale it first runs the envelope Publisher at quorum on the same
// number of events. The ingest service runs in this process with sopts; no
// other replicator instance may serve ingest.* on the cluster, or its share
// of the events could not be counted.
func FireAndForget(ctx context.Context, t *target.Target, o Options, sopts replicator.Options) ([]bench.Result, error) {
	o.setDefaults()
	corpus := Corpus(10_000, o.Size)

	po := o
	po.Rounds = 1
	pub, err := Publisher(ctx, t, "publisher-envelope", streams.EventSubject("bench.pubenv"), corpus, po,
		replicator.WithEnvelope(), replicator.WithMaxBuffered(2*replicator.DefaultMaxBatchBytes))
	if err != nil {
		return nil, fmt.Errorf("publisher-envelope: %w", err)
	}

	snc, err := connectAlone(t, "their share of the events cannot be counted")
	if err != nil {
		return nil, err
	}
	defer snc.Close()
	reg := prometheus.NewRegistry()
	sopts.JS = nil
	sopts.Registerer = reg
	stop, err := startIngest(snc, sopts)
	if err != nil {
		return nil, err
	}
	defer stop()

	nc, err := t.Connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	topic := "bench.fire." + nuid.Next()
	subject := streams.IngestSubject(topic)
	prog := bench.NewProgress(o.Progress, "fire-and-forget send", int64(o.Events))
	start := time.Now()
	var sent int64
	var sendErr error
	for i := range o.Events {
		if ctx.Err() != nil {
			break
		}
		if sendErr = nc.Publish(subject, corpus[i%len(corpus)]); sendErr != nil {
			break
		}
		sent++
		if sent%4096 == 0 {
			prog.Add(4096)
		}
	}
	if err := nc.Flush(); err != nil && sendErr == nil {
		sendErr = err
	}
	sendSecs := time.Since(start).Seconds()
	prog.Stop()

	drained, err := waitIdle(ctx, reg, o.Progress)
	if err != nil {
		return nil, err
	}
	drainSecs := drained.Sub(start).Seconds()
	stored, err := countStored(ctx, t.JS, streams.EventSubject(topic))
	if err != nil {
		return nil, err
	}
	dropped := counters(reg, "platform_replicator_dropped_events_total", "reason")
	var droppedSum float64
	for _, v := range dropped {
		droppedSum += v
	}
	r := bench.Result{Name: "ingest-fire-and-forget", Extra: map[string]float64{
		"sent":          float64(sent),
		"send_per_sec":  float64(sent) / sendSecs,
		"stored":        float64(stored),
		"stored_pct":    100 * float64(stored) / max(float64(sent), 1),
		"dropped":       droppedSum,
		"unaccounted":   float64(sent) - float64(stored) - droppedSum,
		"ratio_vs_pub":  0,
		"publisher_eps": pub.EventsPerSec,
		// tail_secs: how long the service took to store or count the
		// rest once the last event was sent; near 0 when it keeps up
		// with the sender, whose own speed then bounds the drain.
		"tail_secs": max(drainSecs-sendSecs, 0),
	}}
	for reason, v := range dropped {
		r.Extra["dropped_"+reason] = v
	}
	r.Finish(stored, time.Duration(drainSecs*float64(time.Second)), nil)
	r.Extra["ratio_vs_pub"] = r.EventsPerSec / max(pub.EventsPerSec, 1e-9)
	return []bench.Result{pub, r}, sendErr
}

// connectAlone connects for the benchmark's own ingest service and
// refuses, saying why it matters, when replicator instances already
// serve ingest.* on the cluster.
func connectAlone(t *target.Target, why string) (*nats.Conn, error) {
	nc, err := t.Connect()
	if err != nil {
		return nil, err
	}
	n, err := replicatorInstances(nc)
	if err == nil && n > 0 {
		err = fmt.Errorf("%d replicator instance(s) already serve ingest.* on this cluster: %s; run the cluster without the replicator (--services)", n, why)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// replicatorInstances counts the replicator instances answering micro
// pings on nc's cluster.
func replicatorInstances(nc *nats.Conn) (int, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.PING.platform-replicator", inbox, nil); err != nil {
		return 0, err
	}
	n := 0
	for {
		if _, err := sub.NextMsg(500 * time.Millisecond); err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
				return n, nil
			}
			return n, err
		}
		n++
	}
}

// waitIdle polls the ingest service's metrics until they stay still for
// idleFor, and returns when they last moved: when the last event was
// stored or counted.
func waitIdle(ctx context.Context, g prometheus.Gatherer, progress io.Writer) (time.Time, error) {
	families := []struct{ name, label string }{
		{"platform_replicator_dropped_events_total", "reason"},
		{"platform_replicator_events_in_total", "level"},
		{"platform_replicator_batches_out_total", ""},
		{"platform_replicator_retries_total", ""},
		{"platform_replicator_in_flight_messages", ""},
		{"platform_service_requests_total", "endpoint"},
	}
	snapshot := func() [6]float64 {
		var s [6]float64
		for i, f := range families {
			for _, v := range counters(g, f.name, f.label) {
				s[i] += v
			}
		}
		return s
	}
	prog := bench.NewProgress(progress, "fire-and-forget drain", int64(idleFor/(100*time.Millisecond)))
	defer prog.Stop()
	last, moved := snapshot(), time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case now := <-tick.C:
			s := snapshot()
			if s != last {
				last, moved = s, now
				continue
			}
			prog.Add(1)
			if now.Sub(moved) >= idleFor {
				return moved, nil
			}
		}
	}
}

// counters returns the values of the counter or gauge family name, keyed
// by the value of label.
func counters(g prometheus.Gatherer, name, label string) map[string]float64 {
	out := map[string]float64{}
	mfs, err := g.Gather()
	if err != nil {
		return out
	}
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
			out[key] += value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

// countStored reads subject back from EVENTS (headers only) and counts the
// events its messages hold: an envelope's count, else one.
func countStored(ctx context.Context, js jetstream.JetStream, subject string) (int64, error) {
	s, err := js.Stream(ctx, streams.Events)
	if err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	msgs := info.State.Subjects[subject]
	if msgs == 0 {
		return 0, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, HeadersOnly: true,
	})
	if err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	defer it.Stop()
	var events int64
	for range msgs {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := it.Next(jetstream.NextContext(rctx))
		cancel()
		if err != nil {
			return events, fmt.Errorf("read back: %w", err)
		}
		n := int64(1)
		if c := m.Headers().Get(streams.EnvelopeCountHeader); c != "" {
			if n, err = strconv.ParseInt(c, 10, 64); err != nil {
				return events, fmt.Errorf("read back: envelope count %q: %w", c, err)
			}
		}
		events += n
	}
	return events, nil
}
