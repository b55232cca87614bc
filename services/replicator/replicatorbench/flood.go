package replicatorbench

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// floodOutcomes counts how the requests of one phase ended.
type floodOutcomes struct {
	stored, unavailable, timedOut, otherErr, noAnswer atomic.Int64
}

// Flood measures what a requester sees while fire-and-forget events
// flood the ingest service: o.Clients clients each send o.Events requests
// one after another at level o.Consistency, first on an idle platform,
// then while one connection publishes o.FloodEvents events of
// o.FloodSize bytes to another topic at full speed (as `nats bench pub`
// does). Each request waits up to o.Timeout; an answer of any kind
// (stored, unavailable, timeout) counts, silence counts as o.Timeout in
// the percentiles and as no_answer. The flood row carries its P99 over the
// idle row's (p99_ratio_vs_idle). The ingest service runs in this process
// with sopts; no other replicator instance may serve ingest.*.
func Flood(ctx context.Context, t *target.Target, o Options, sopts replicator.Options) ([]bench.Result, error) {
	o.setDefaults()
	if o.FloodSize <= 0 {
		o.FloodSize = 128
	}
	if o.FloodEvents <= 0 {
		o.FloodEvents = 3_000_000
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Consistency == "" {
		o.Consistency = "all"
	}
	snc, err := connectAlone(t, "the requests would not all meet the benchmark's service")
	if err != nil {
		return nil, err
	}
	defer snc.Close()
	sopts.JS = nil
	stop, err := startIngest(snc, sopts)
	if err != nil {
		return nil, err
	}
	defer stop()

	conns := make([]*nats.Conn, o.Clients)
	for i := range conns {
		if conns[i], err = t.Connect(); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}
	corpus := Corpus(1000, o.Size)
	reqSubject := streams.IngestSubject("bench.flood.req")
	header := nats.Header{streams.ConsistencyHeader: {o.Consistency}}

	// phase sends every client's requests and records their latencies.
	phase := func(name string) (*bench.Latencies, *floodOutcomes, time.Duration) {
		var lat bench.Latencies
		var out floodOutcomes
		prog := bench.NewProgress(o.Progress, name, int64(o.Clients*o.Events))
		defer prog.Stop()
		start := time.Now()
		var wg sync.WaitGroup
		for c := range o.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range o.Events {
					if ctx.Err() != nil {
						return
					}
					m := &nats.Msg{Subject: reqSubject, Data: corpus[(c*o.Events+i)%len(corpus)], Header: header}
					t0 := time.Now()
					rctx, cancel := context.WithTimeout(ctx, o.Timeout)
					resp, err := conns[c].RequestMsgWithContext(rctx, m)
					cancel()
					d := time.Since(t0)
					switch {
					case err != nil:
						out.noAnswer.Add(1)
						d = o.Timeout
					default:
						var ack replicator.IngestAck
						e := service.ParseError(service.JSON, resp.Data)
						switch {
						case e == nil && json.Unmarshal(resp.Data, &ack) == nil && ack.Seq > 0:
							out.stored.Add(1)
						case e != nil && e.Code == service.CodeUnavailable:
							out.unavailable.Add(1)
						case e != nil && e.Code == service.CodeTimeout:
							out.timedOut.Add(1)
						default:
							out.otherErr.Add(1)
						}
					}
					lat.Add(d)
					prog.Add(1)
				}
			}()
		}
		wg.Wait()
		return &lat, &out, time.Since(start)
	}

	idleLat, idleOut, idleTook := phase("requests on an idle platform")
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// The flood: one connection at full speed, to a topic of its own.
	fnc, err := t.Connect()
	if err != nil {
		return nil, err
	}
	defer fnc.Close()
	floodSubject := streams.IngestSubject("bench.flood." + nuid.Next())
	floodData := Corpus(64, o.FloodSize)
	var floodSent atomic.Int64
	floodDone := make(chan struct{})
	floodCtx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	var floodErr error
	floodStart := time.Now()
	var floodSecs float64
	go func() {
		defer close(floodDone)
		for i := range o.FloodEvents {
			if floodCtx.Err() != nil {
				break
			}
			if err := fnc.Publish(floodSubject, floodData[i%len(floodData)]); err != nil {
				floodErr = err
				break
			}
			floodSent.Add(1)
		}
		if err := fnc.Flush(); err != nil && floodErr == nil && !errors.Is(err, nats.ErrConnectionClosed) {
			floodErr = err
		}
		floodSecs = time.Since(floodStart).Seconds()
	}()
	// Requests start once the flood is well under way: a tenth of it sent.
wait:
	for floodSent.Load() < int64(o.FloodEvents/10) {
		select {
		case <-floodDone:
			break wait
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	floodLat, floodOut, floodTook := phase("requests during the flood")
	sentWhenDone := floodSent.Load()
	stopFlood()
	<-floodDone

	row := func(name string, lat *bench.Latencies, out *floodOutcomes, took time.Duration) bench.Result {
		r := bench.Result{Name: name, Extra: map[string]float64{
			"clients":     float64(o.Clients),
			"stored":      float64(out.stored.Load()),
			"unavailable": float64(out.unavailable.Load()),
			"timeout":     float64(out.timedOut.Load()),
			"other_error": float64(out.otherErr.Load()),
			"no_answer":   float64(out.noAnswer.Load()),
		}}
		answered := out.stored.Load() + out.unavailable.Load() + out.timedOut.Load() + out.otherErr.Load()
		r.Finish(answered, took, lat)
		return r
	}
	idle := row("requests-idle", idleLat, idleOut, idleTook)
	flood := row("requests-during-flood", floodLat, floodOut, floodTook)
	flood.Extra["flood_size"] = float64(o.FloodSize)
	flood.Extra["flood_sent"] = float64(floodSent.Load())
	flood.Extra["flood_sent_during_requests_pct"] = 100 * float64(sentWhenDone) / float64(o.FloodEvents)
	if floodSecs > 0 {
		flood.Extra["flood_mb_per_s"] = float64(floodSent.Load()) * float64(o.FloodSize) / floodSecs / 1e6
	}
	flood.Extra["p99_ratio_vs_idle"] = flood.P99MS / max(idle.P99MS, 1e-9)
	return []bench.Result{idle, flood}, floodErr
}
