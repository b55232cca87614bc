package replicatorbench

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// Ingest compares o.Clients request clients, each sending o.Events
// events one after another through ingest.bench at quorum, with the same
// clients publishing synchronously straight to JetStream, and reports the
// ceiling of request-reply itself: the same clients against a responder
// that stores nothing. The three sides alternate in o.Rounds rounds so
// that noise from elsewhere on the machine hits them alike. It runs one
// ingest service instance in this process.
func Ingest(ctx context.Context, t *target.Target, o Options, sopts replicator.Options) ([]bench.Result, error) {
	o.setDefaults()
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
	stop, err := startIngest(snc, sopts)
	if err != nil {
		return nil, err
	}
	defer stop()

	ok := []byte(`"seq":`)
	sides := []struct {
		name string
		one  func(c int, nc *nats.Conn, data []byte) error
	}{
		{"raw-sync-publish", func(c int, _ *nats.Conn, data []byte) error {
			_, err := jss[c].Publish(ctx, streams.EventSubject("bench.rawsync"), data)
			return err
		}},
		{"request-reply-ceiling", func(_ int, nc *nats.Conn, data []byte) error {
			_, err := nc.Request("bench.echo", data, 30*time.Second)
			return err
		}},
		{"ingest-request", func(_ int, nc *nats.Conn, data []byte) error {
			m, err := nc.Request(streams.IngestSubject("bench"), data, 30*time.Second)
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
