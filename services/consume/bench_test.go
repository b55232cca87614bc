package consume

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// BenchmarkExactlyOnce measures a group of 4 members (default options,
// 16 partitions) applying events as counter increments: from the first
// event published (in envelopes, 64 topics) to the last applied, once
// every member owns its partitions.
//
//	go test -run XXX -bench ExactlyOnce -benchtime 20000x ./services/consume/
func BenchmarkExactlyOnce(b *testing.B) {
	e := &groupEnv{}
	e.c, e.nc, e.js = clustertest.Provisioned(b, 3)
	add := func(tx *txn.Tx, ev replicator.Event) error {
		key := "sum." + strings.TrimPrefix(ev.Subject, streams.EventsPrefix)
		en, err := tx.Get(key)
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(en.Value))
		v, _ := strconv.Atoi(string(ev.Data))
		return tx.Put(key, []byte(strconv.Itoa(n+v)))
	}
	var ms []*running
	for i := range 4 {
		ms = append(ms, startBench(b, e, fmt.Sprintf("m%d", i), add))
	}
	clustertest.Eventually(b, time.Minute, func() error {
		for _, m := range ms {
			if n := m.held.Load(); n != DefaultPartitions/4 {
				return fmt.Errorf("member %s owns %d partitions", m.ID(), n)
			}
		}
		return nil
	})

	var topics []string
	for i := range 64 {
		topics = append(topics, fmt.Sprintf("bench.t%d", i))
	}
	per := max(1, b.N/len(topics))
	total := int64(per * len(topics))
	ctx := clustertest.Context(b, 5*time.Minute)
	b.ResetTimer()
	start := time.Now()
	p, err := replicator.NewPublisher(e.js, replicator.WithEnvelope())
	if err != nil {
		b.Fatal(err)
	}
	for i := range per {
		for _, tp := range topics {
			if _, err := p.PublishAsync(ctx, replicator.Message{Subject: streams.EventsPrefix + tp, Data: []byte(strconv.Itoa(i))}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	for {
		var n int64
		for _, m := range ms {
			n += m.Applied()
		}
		if n >= total {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d events applied", n, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(total)/el.Seconds(), "events/s")
}

func startBench(b *testing.B, e *groupEnv, id string, h Handler) *running {
	nc := clustertest.Connect(b, e.c)
	store, err := txn.NewStore(nc, txn.WithLogger(clustertest.Logger()))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(Options{Conn: nc, Store: store, Group: "bench", Member: id, Handler: h, Logger: clustertest.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Member: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-r.done })
	return r
}
