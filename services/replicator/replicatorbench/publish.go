package replicatorbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// RawAsync is the baseline: nats.go JetStream async publishing with
// o.InFlight acknowledgements outstanding. A non-empty idHeader gives
// every message a unique id in that header: jetstream.MsgIDHeader as the
// Publisher does, or any other header to tell the price of deduplication
// from the price of carrying a header at all.
func RawAsync(ctx context.Context, t *target.Target, name, subject string, corpus [][]byte, o Options, idHeader string) (bench.Result, error) {
	o.setDefaults()
	nc, err := t.Connect()
	if err != nil {
		return bench.Result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(o.InFlight))
	if err != nil {
		return bench.Result{}, err
	}
	prog := o.prog
	if prog == nil {
		prog = bench.NewProgress(o.Progress, name, int64(o.Events))
		defer prog.Stop()
	}
	idPrefix := nuid.Next() + "."
	w := newAckWaiter(prog, o.Events, o.lat)
	start := time.Now()
	for i := range o.Events {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		m := &nats.Msg{Subject: subject, Data: corpus[i%len(corpus)]}
		if idHeader != "" {
			m.Header = nats.Header{idHeader: []string{idPrefix + strconv.Itoa(i)}}
		}
		f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
		if err != nil {
			w.wait()
			return bench.Result{}, fmt.Errorf("%s: publish: %w", name, err)
		}
		w.ch <- waitItem{start: t0, wait: func() error {
			select {
			case <-f.Ok():
				return nil
			case err := <-f.Err():
				return err
			}
		}}
	}
	err = w.wait()
	elapsed := time.Since(start)
	r := bench.Result{Name: name, Extra: map[string]float64{"in_flight": float64(o.InFlight)}}
	r.Finish(w.acked, elapsed, &w.lat)
	return r, err
}

// Publisher publishes o.Events events of the corpus with a
// replicator.Publisher at Quorum (popts may change that) and reports
// events/s and latency from accept to ack.
func Publisher(ctx context.Context, t *target.Target, name, subject string, corpus [][]byte, o Options, popts ...replicator.PublisherOption) (bench.Result, error) {
	o.setDefaults()
	nc, err := t.Connect()
	if err != nil {
		return bench.Result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return bench.Result{}, err
	}
	var bytesIn int64
	var msgs atomic.Int64
	popts = append([]replicator.PublisherOption{replicator.WithLevel(replicator.Quorum), replicator.WithLogger(slog.New(slog.DiscardHandler)),
		replicator.WithResultHandler(func(m *replicator.Message, ack replicator.Ack, err error) {
			if err == nil && ack.Index == 0 {
				msgs.Add(1) // first event of its stream message
			}
		})}, popts...)
	p, err := replicator.NewPublisher(js, popts...)
	if err != nil {
		return bench.Result{}, err
	}
	prog := o.prog
	if prog == nil {
		prog = bench.NewProgress(o.Progress, name, int64(o.Events))
		defer prog.Stop()
	}
	w := newAckWaiter(prog, o.Events, o.lat)
	start := time.Now()
	for i := range o.Events {
		d := corpus[i%len(corpus)]
		bytesIn += int64(len(d))
		t0 := time.Now()
		f, err := p.PublishAsync(ctx, replicator.Message{Subject: subject, Data: d})
		if err != nil {
			break
		}
		w.ch <- waitItem{start: t0, wait: func() error { _, err := f.Result(); return err }}
	}
	ferr := p.Flush(ctx)
	err = w.wait()
	elapsed := time.Since(start)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.Close(cctx)
	nmsgs := msgs.Load()
	r := bench.Result{Name: name, Extra: map[string]float64{
		"in_flight":       float64(p.MaxInFlight()),
		"events_per_msg":  float64(w.acked) / float64(max(nmsgs, 1)),
		"input_mb_per_s":  float64(bytesIn) / 1e6 / elapsed.Seconds(),
		"stream_messages": float64(nmsgs),
	}}
	r.Finish(w.acked, elapsed, &w.lat)
	return r, errors.Join(err, ferr)
}

// Publish runs the raw async baseline and the Publisher side by side
// (envelope mode when envelope is set), in alternating rounds, and adds the
// ratio to the Publisher's result.
func Publish(ctx context.Context, t *target.Target, envelope bool, o Options) ([]bench.Result, error) {
	o.setDefaults()
	corpus := Corpus(10_000, o.Size)
	name := "publisher"
	// The buffer holds one window of events beyond those in flight, so
	// the producer is held back about as early as the raw publisher's
	// stall and the latencies compare like for like.
	window := o.InFlight * (o.Size + 64)
	popts := []replicator.PublisherOption{replicator.WithMaxInFlight(o.InFlight), replicator.WithBatch(o.InFlight, window), replicator.WithMaxBuffered(window)}
	if envelope {
		name = "publisher-envelope"
		popts = []replicator.PublisherOption{replicator.WithEnvelope(), replicator.WithMaxBuffered(2 * replicator.DefaultMaxBatchBytes)}
	}
	sides := []struct {
		name string
		run  func(o Options) (bench.Result, error)
	}{
		{"raw-async-publish", func(o Options) (bench.Result, error) {
			return RawAsync(ctx, t, "raw-async-publish", streams.EventSubject("bench.raw"), corpus, o, "")
		}},
		{name, func(o Options) (bench.Result, error) {
			return Publisher(ctx, t, name, streams.EventSubject("bench.pub"), corpus, o, popts...)
		}},
	}
	if !envelope {
		// For context: the raw baseline doing the work the Publisher does
		// for idempotent retries (a Nats-Msg-Id on every message, which
		// the stream deduplicates), and carrying an id of the same size in
		// a header the server ignores, which shows what part of that cost
		// is the header itself.
		for _, h := range []struct{ name, header string }{
			{"raw-async-publish-msgid", jetstream.MsgIDHeader},
			{"raw-async-publish-header", "Platform-Event-Id"},
		} {
			sides = append(sides, struct {
				name string
				run  func(o Options) (bench.Result, error)
			}{h.name, func(o Options) (bench.Result, error) {
				return RawAsync(ctx, t, h.name, streams.EventSubject("bench.raw."+h.header), corpus, o, h.header)
			}})
		}
	}
	results := make([]bench.Result, len(sides))
	lats := make([]bench.Latencies, len(sides))
	for i := range sides {
		results[i] = bench.Result{Name: sides[i].name, Extra: map[string]float64{}}
	}
	per := max(1, o.Events/o.Rounds)
	elapsed := make([]time.Duration, len(sides))
	events := make([]int64, len(sides))
	var msgs float64
	for round := range o.Rounds {
		for i, side := range sides {
			ro := o
			ro.Events = per
			ro.lat = &lats[i]
			ro.prog = bench.NewProgress(o.Progress, fmt.Sprintf("%s %d/%d", side.name, round+1, o.Rounds), int64(per))
			r, err := side.run(ro)
			ro.prog.Stop()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", side.name, err)
			}
			elapsed[i] += time.Duration(r.Seconds * float64(time.Second))
			events[i] += r.Events
			for k, v := range r.Extra {
				results[i].Extra[k] = v
			}
			if i == 1 {
				msgs += r.Extra["stream_messages"]
			}
		}
	}
	for i := range sides {
		results[i].Finish(events[i], elapsed[i], &lats[i])
		results[i].Extra["rounds"] = float64(o.Rounds)
	}
	pub := &results[1]
	pub.Extra["stream_messages"] = msgs
	pub.Extra["events_per_msg"] = float64(pub.Events) / max(msgs, 1)
	delete(pub.Extra, "input_mb_per_s")
	pub.Extra["ratio_vs_raw"] = pub.EventsPerSec / results[0].EventsPerSec
	if len(results) > 3 {
		pub.Extra["ratio_vs_raw_msgid"] = pub.EventsPerSec / results[2].EventsPerSec
		pub.Extra["ratio_vs_raw_header"] = pub.EventsPerSec / results[3].EventsPerSec
	}
	return results, nil
}
