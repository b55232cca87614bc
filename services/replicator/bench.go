package replicator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
)

// BenchOptions size the replicator's benchmarks.
type BenchOptions struct {
	// Events is how many events to publish (per client for BenchIngest).
	Events int
	// Size is the event size in bytes (default 128).
	Size int
	// InFlight is the pipeline depth of both the Publisher and the raw
	// baseline (default 256).
	InFlight int
	// Clients is how many concurrent request clients BenchIngest runs.
	Clients int
	// Conns is how many NATS connections the clients share (default one
	// per client).
	Conns int
	// Progress receives progress bars (nil: none).
	Progress io.Writer
	// Rounds splits the publish benchmarks into that many alternating
	// rounds of the baseline and the Publisher (default 3), so load from
	// elsewhere on the machine hits both sides alike.
	Rounds int

	lat  *bench.Latencies // shared across rounds when set
	prog *bench.Progress
}

func (o *BenchOptions) defaults() {
	if o.Size == 0 {
		o.Size = 128
	}
	if o.InFlight == 0 {
		o.InFlight = DefaultMaxInFlight
	}
	if o.Events == 0 {
		o.Events = 100_000
	}
	if o.Clients == 0 {
		o.Clients = 100
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
}

// Corpus returns n realistic JSON events of about size bytes each, the
// same for every run (fixed seed).
func Corpus(n, size int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []string{"order.created", "order.paid", "order.shipped", "cart.updated", "user.login"}
	cities := []string{"Berlin", "Lyon", "Osaka", "Austin", "Porto", "Leeds"}
	out := make([][]byte, n)
	for i := range out {
		b := fmt.Appendf(nil, `{"id":%d,"type":%q,"user":"u%05d","city":%q,"amount":%d.%02d,"ts":"2025-06-%02dT%02d:%02d:%02dZ","items":%d`,
			1_000_000+i, kinds[rng.IntN(len(kinds))], rng.IntN(50_000), cities[rng.IntN(len(cities))],
			rng.IntN(500), rng.IntN(100), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), 1+rng.IntN(9))
		if len(b) < size-2 {
			pad := size - 2 - len(b) - len(`,"note":""`)
			if pad > 0 {
				note := make([]byte, pad)
				for j := range note {
					note[j] = "abcdefghijklmnopqrstuvwxyz     "[rng.IntN(31)]
				}
				b = fmt.Appendf(b, `,"note":%q`, note)
			}
		}
		out[i] = append(b, '}')
	}
	return out
}

// ackWaiter records each event's latency from its send time, waiting on
// the outcomes in send order.
type ackWaiter struct {
	lat    bench.Latencies
	ch     chan waitItem
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	prog   *bench.Progress
	acked  int64
	shared *bench.Latencies
}

type waitItem struct {
	start time.Time
	wait  func() error // blocks until the outcome
}

func newAckWaiter(prog *bench.Progress, events int, lat *bench.Latencies) *ackWaiter {
	w := &ackWaiter{ch: make(chan waitItem, min(events, 1<<20)), prog: prog, shared: lat}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for it := range w.ch {
			if err := it.wait(); err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = err
				}
				w.mu.Unlock()
				continue
			}
			if w.shared != nil {
				w.shared.Add(time.Since(it.start))
			} else {
				w.lat.Add(time.Since(it.start))
			}
			w.acked++
			w.prog.Add(1)
		}
	}()
	return w
}

func (w *ackWaiter) wait() error {
	close(w.ch)
	w.wg.Wait()
	return w.err
}

// BenchRawAsync is the baseline: nats.go JetStream async publishing with
// opts.InFlight acknowledgements outstanding. A non-empty idHeader gives
// every message a unique id in that header: jetstream.MsgIDHeader as the
// Publisher does, or any other header to tell the price of deduplication
// from the price of carrying a header at all.
func BenchRawAsync(ctx context.Context, t *target.Target, name, subject string, corpus [][]byte, o BenchOptions, idHeader string) (bench.Result, error) {
	o.defaults()
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

// BenchPublisher publishes opts.Events events of the corpus with a
// Publisher at Quorum and reports events/s and latency from accept to ack.
func BenchPublisher(ctx context.Context, t *target.Target, name, subject string, corpus [][]byte, o BenchOptions, popts ...Option) (bench.Result, error) {
	o.defaults()
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
	popts = append([]Option{WithLevel(Quorum), WithLogger(slog.New(slog.DiscardHandler)),
		WithResultHandler(func(m *Message, ack Ack, err error) {
			if err == nil && ack.Index == 0 {
				msgs.Add(1) // first event of its stream message
			}
		})}, popts...)
	p, err := NewPublisher(js, popts...)
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
		f, err := p.PublishAsync(ctx, Message{Subject: subject, Data: d})
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
		"in_flight":       float64(p.cfg.maxInFlight),
		"events_per_msg":  float64(w.acked) / float64(max(nmsgs, 1)),
		"input_mb_per_s":  float64(bytesIn) / 1e6 / elapsed.Seconds(),
		"stream_messages": float64(nmsgs),
	}}
	r.Finish(w.acked, elapsed, &w.lat)
	return r, errors.Join(err, ferr)
}

// BenchPublish runs the raw async baseline and the Publisher side by side
// (envelope mode when envelope is set), in alternating rounds, and adds the
// ratio to the Publisher's result.
func BenchPublish(ctx context.Context, t *target.Target, envelope bool, o BenchOptions) ([]bench.Result, error) {
	o.defaults()
	corpus := Corpus(10_000, o.Size)
	name := "publisher"
	// The buffer holds one window of events beyond those in flight, so
	// the producer is held back about as early as the raw publisher's
	// stall and the latencies compare like for like.
	window := o.InFlight * (o.Size + 64)
	popts := []Option{WithMaxInFlight(o.InFlight), WithBatch(o.InFlight, window), WithMaxBuffered(window)}
	if envelope {
		name = "publisher-envelope"
		popts = []Option{WithEnvelope(), WithMaxBuffered(2 * DefaultMaxBatchBytes)}
	}
	sides := []struct {
		name string
		run  func(o BenchOptions) (bench.Result, error)
	}{
		{"raw-async-publish", func(o BenchOptions) (bench.Result, error) {
			return BenchRawAsync(ctx, t, "raw-async-publish", "events.bench.raw", corpus, o, "")
		}},
		{name, func(o BenchOptions) (bench.Result, error) {
			return BenchPublisher(ctx, t, name, "events.bench.pub", corpus, o, popts...)
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
				run  func(o BenchOptions) (bench.Result, error)
			}{h.name, func(o BenchOptions) (bench.Result, error) {
				return BenchRawAsync(ctx, t, h.name, "events.bench.raw."+h.header, corpus, o, h.header)
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

// BenchIngest compares o.Clients request clients, each sending o.Events
// events one after another through ingest.bench at quorum, with the same
// clients publishing synchronously straight to JetStream, and reports the
// ceiling of request-reply itself: the same clients against a responder
// that stores nothing. The three sides alternate in o.Rounds rounds so
// that noise from elsewhere on the machine hits them alike. It runs one
// ingest service instance in this process.
func BenchIngest(ctx context.Context, t *target.Target, o BenchOptions, sopts Options) ([]bench.Result, error) {
	o.defaults()
	corpus := Corpus(10_000, o.Size)
	if o.Conns <= 0 || o.Conns > o.Clients {
		o.Conns = o.Clients
	}
	conns := make([]*nats.Conn, o.Conns)
	jss := make([]jetstream.JetStream, o.Conns)
	for i := range conns {
		nc, err := t.Connect()
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		conns[i] = nc
		if jss[i], err = jetstream.New(nc); err != nil {
			return nil, err
		}
	}

	// The ceiling's responder: one connection that answers at once.
	enc, err := t.Connect()
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	echoAck := []byte(`{"stream":"EVENTS","seq":0,"duplicate":false}`)
	if _, err := enc.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(echoAck) }); err != nil {
		return nil, err
	}
	if err := enc.Flush(); err != nil {
		return nil, err
	}

	snc, err := t.Connect()
	if err != nil {
		return nil, err
	}
	defer snc.Close()
	sopts.Conn = snc
	if sopts.Logger == nil {
		sopts.Logger = slog.New(slog.DiscardHandler)
	}
	svc, err := New(sopts)
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	defer func() { stop(); <-done }()
	select {
	case <-svc.Ready():
	case err := <-done:
		return nil, fmt.Errorf("ingest service: %w", err)
	}

	ok := []byte(`"seq":`)
	sides := []struct {
		name string
		one  func(c int, nc *nats.Conn, data []byte) error
	}{
		{"raw-sync-publish", func(c int, _ *nats.Conn, data []byte) error {
			_, err := jss[c].Publish(ctx, "events.bench.rawsync", data)
			return err
		}},
		{"request-reply-ceiling", func(_ int, nc *nats.Conn, data []byte) error {
			_, err := nc.Request("bench.echo", data, 30*time.Second)
			return err
		}},
		{"ingest-request", func(_ int, nc *nats.Conn, data []byte) error {
			m, err := nc.Request("ingest.bench", data, 30*time.Second)
			if err != nil {
				return err
			}
			if !bytes.Contains(m.Data, ok) || bytes.Contains(m.Data, []byte(`"error"`)) {
				return fmt.Errorf("ingest answered %s", m.Data)
			}
			return nil
		}},
	}

	// runClients runs one round of one side: every client sends per events.
	runClients := func(name string, round, per int, lat *bench.Latencies, one func(c int, nc *nats.Conn, data []byte) error) (int64, time.Duration, error) {
		prog := bench.NewProgress(o.Progress, fmt.Sprintf("%s %d/%d", name, round+1, o.Rounds), int64(o.Clients*per))
		defer prog.Stop()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		var acked int64
		start := time.Now()
		for c := range o.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var n int64
				for i := range per {
					if ctx.Err() != nil {
						break
					}
					t0 := time.Now()
					data := corpus[(c*o.Events+round*o.Events/o.Rounds+i)%len(corpus)]
					if err := one(c%len(conns), conns[c%len(conns)], data); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						break
					}
					lat.Add(time.Since(t0))
					prog.Add(1)
					n++
				}
				mu.Lock()
				acked += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		return acked, time.Since(start), firstErr
	}

	o.Rounds = max(1, min(o.Rounds, o.Events))
	acked := make([]int64, len(sides))
	elapsed := make([]time.Duration, len(sides))
	lats := make([]bench.Latencies, len(sides))
	var runErr error
rounds:
	for round := range o.Rounds {
		per := o.Events / o.Rounds
		if round < o.Events%o.Rounds {
			per++
		}
		for i, side := range sides {
			n, d, err := runClients(side.name, round, per, &lats[i], side.one)
			acked[i] += n
			elapsed[i] += d
			if err != nil {
				runErr = fmt.Errorf("%s: %w", side.name, err)
				break rounds
			}
		}
	}
	results := make([]bench.Result, len(sides))
	for i, side := range sides {
		results[i] = bench.Result{Name: side.name, Extra: map[string]float64{
			"clients": float64(o.Clients), "conns": float64(len(conns)), "rounds": float64(o.Rounds),
		}}
		results[i].Finish(acked[i], elapsed[i], &lats[i])
	}
	ing := &results[2]
	ing.Extra["ratio_vs_raw_sync"] = ing.EventsPerSec / max(results[0].EventsPerSec, 1e-9)
	ing.Extra["ratio_vs_ceiling"] = ing.EventsPerSec / max(results[1].EventsPerSec, 1e-9)
	return results, runErr
}

// BenchCompress measures each codec on the corpus, compressing events one
// by one and as envelopes of perEnvelope events: the ratio (raw bytes over
// stored bytes, counting events left uncompressed at their size) and the
// compression and decompression speed.
func BenchCompress(events, size, perEnvelope int, progress io.Writer) ([]bench.Result, error) {
	corpus := Corpus(events, size)
	var raw int64
	for _, e := range corpus {
		raw += int64(len(e))
	}
	var results []bench.Result
	for _, codec := range []Compression{S2, Zstd, Gzip} {
		for _, envelope := range []bool{false, true} {
			name := "compress-" + codec.String() + "-single"
			var units [][]byte
			if envelope {
				name = fmt.Sprintf("compress-%s-envelope%d", codec, perEnvelope)
				for i := 0; i < len(corpus); i += perEnvelope {
					part := corpus[i:min(i+perEnvelope, len(corpus))]
					b := appendEnvelopeHeader(nil, len(part))
					for _, d := range part {
						b = appendEntry(b, d, nil)
					}
					units = append(units, b)
				}
			} else {
				units = corpus
			}
			prog := bench.NewProgress(progress, name, int64(len(units)))
			var lat bench.Latencies
			var stored int64
			out := make([][]byte, len(units))
			encs := make([]string, len(units))
			start := time.Now()
			for i, u := range units {
				t0 := time.Now()
				c := compress(codec, u)
				lat.Add(time.Since(t0))
				if c == nil {
					c = u
				} else {
					encs[i] = codec.String()
				}
				out[i] = c
				stored += int64(len(c))
				prog.Add(1)
			}
			enc := time.Since(start)
			prog.Stop()
			dstart := time.Now()
			for i, c := range out {
				d, err := decompress(encs[i], c)
				if err != nil || len(d) != len(units[i]) {
					return results, fmt.Errorf("%s: unit %d does not round-trip: %v", name, i, err)
				}
			}
			dec := time.Since(dstart)
			r := bench.Result{Name: name, Extra: map[string]float64{
				"ratio":           float64(raw) / float64(stored),
				"mb_per_s":        float64(raw) / 1e6 / enc.Seconds(),
				"decode_mb_per_s": float64(raw) / 1e6 / dec.Seconds(),
			}}
			r.Finish(int64(len(corpus)), enc, &lat)
			results = append(results, r)
		}
	}
	return results, nil
}
