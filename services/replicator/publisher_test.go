package replicator

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/streams"
)

func TestPublishRoundTrip(t *testing.T) {
	e := newEnv(t, 1)
	for _, tc := range []struct {
		name string
		opts []PublisherOption
	}{
		{"per event", nil},
		{"envelope", []PublisherOption{WithEnvelope(), WithLinger(5 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subj := "events.rt." + fmt.Sprint(len(tc.opts))
			p := e.publisher(t, tc.opts...)
			ctx := clustertest.Context(t, 20*time.Second)
			const n = 500
			futs := make([]*Future, n)
			for i := range n {
				f, err := p.PublishAsync(ctx, Message{Subject: subj, Data: fmt.Appendf(nil, "event-%d", i)})
				require.NoError(t, err)
				futs[i] = f
			}
			require.NoError(t, p.Flush(ctx))
			for i, f := range futs {
				ack, err := f.Result()
				require.NoError(t, err, "event %d", i)
				require.NotZero(t, ack.Seq)
			}
			evs := readAll(t, e.js, n, WithFilter(subj))
			for i, ev := range evs {
				require.Equal(t, fmt.Sprintf("event-%d", i), string(ev.Data))
			}
		})
	}
}

func TestCompressionThresholdAndEnvelopeRoundTrip(t *testing.T) {
	e := newEnv(t, 1)
	const above = 512
	text := func(n int) []byte { return []byte(strings.Repeat("abcdefgh", n/8+1)[:n]) }
	noise := make([]byte, 2048)
	_, _ = rand.Read(noise)
	stream, err := e.js.Stream(clustertest.Context(t, 5*time.Second), streams.Events)
	require.NoError(t, err)
	for _, tc := range []struct {
		name     string
		opts     []PublisherOption
		data     [][]byte
		encoding string // Content-Encoding stored on the first message
	}{
		{"below threshold", []PublisherOption{WithCompression(S2, above)}, [][]byte{text(above - 1)}, ""},
		{"at threshold", []PublisherOption{WithCompression(S2, above)}, [][]byte{text(above)}, "s2"},
		{"incompressible", []PublisherOption{WithCompression(S2, above)}, [][]byte{noise}, ""},
		{"zstd", []PublisherOption{WithCompression(Zstd, above)}, [][]byte{text(4096)}, "zstd"},
		{"gzip", []PublisherOption{WithCompression(Gzip, above)}, [][]byte{text(4096)}, "gzip"},
		{"none", []PublisherOption{WithCompression(NoCompression, 0)}, [][]byte{text(4096)}, ""},
		{"envelope compressed", []PublisherOption{WithEnvelope(), WithLinger(20 * time.Millisecond), WithCompression(Zstd, above)},
			[][]byte{text(100), text(200), text(300), []byte{}}, "zstd"},
		{"envelope below threshold", []PublisherOption{WithEnvelope(), WithLinger(20 * time.Millisecond), WithCompression(S2, above)},
			[][]byte{[]byte("a"), []byte("b")}, ""},
		{"envelope incompressible", []PublisherOption{WithEnvelope(), WithLinger(20 * time.Millisecond), WithCompression(S2, above)},
			[][]byte{noise[:1024], noise[1024:]}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := clustertest.Context(t, 10*time.Second)
			p := e.publisher(t, tc.opts...)
			subj := "events.comp." + strings.ReplaceAll(tc.name, " ", "_")
			futs := make([]*Future, len(tc.data))
			for i, d := range tc.data {
				futs[i], err = p.PublishAsync(ctx, Message{Subject: subj, Data: d, Header: nats.Header{"X-I": {fmt.Sprint(i)}}})
				require.NoError(t, err)
			}
			require.NoError(t, p.Flush(ctx))
			first, err := futs[0].Result()
			require.NoError(t, err)
			raw, err := stream.GetMsg(ctx, first.Seq)
			require.NoError(t, err)
			require.Equal(t, tc.encoding, raw.Header.Get(streams.ContentEncodingHeader), "stored Content-Encoding")
			evs := readAll(t, e.js, len(tc.data), WithFilter(subj))
			for i, ev := range evs {
				require.Equal(t, tc.data[i], ev.Data, "event %d", i)
				require.Equal(t, fmt.Sprint(i), ev.Header.Get("X-I"), "event %d header", i)
				ack, err := futs[i].Result()
				require.NoError(t, err)
				require.Equal(t, ack.Pos(), ev.Pos, "event %d position", i)
				require.Equal(t, ack.ID, ev.ID, "event %d id", i)
			}
		})
	}
}

func TestReaderPositionsAndSingleReads(t *testing.T) {
	e := newEnv(t, 1)
	ctx := clustertest.Context(t, 20*time.Second)
	p := e.publisher(t, WithEnvelope(), WithLinger(20*time.Millisecond))
	const subj = "events.pos"
	var futs []*Future
	for i := range 10 {
		f, err := p.PublishAsync(ctx, Message{Subject: subj, Data: fmt.Appendf(nil, "e%d", i)})
		require.NoError(t, err)
		futs = append(futs, f)
	}
	require.NoError(t, p.Flush(ctx))
	// A lone event gets a message of its own, readable by any NATS tool.
	lone, err := p.Publish(ctx, Message{Subject: subj, Data: []byte("lone")})
	require.NoError(t, err)
	require.Equal(t, 1, lone.Count)
	all := readAll(t, e.js, 11, WithFilter(subj))
	require.Greater(t, all[0].Pos.Count, 1, "the ten events share an envelope")

	// Resuming at any position yields exactly the events from there on.
	for _, from := range []int{0, 3, 9, 10} {
		got := readAll(t, e.js, 11-from, WithFilter(subj), WithStartAt(all[from].Pos))
		for i, ev := range got {
			require.Equal(t, all[from+i].Data, ev.Data, "resume at %d, event %d", from, i)
		}
	}
	require.Equal(t, all[4].Pos.Next(), all[5].Pos)

	for _, level := range []ReadLevel{Strong, Eventual} {
		ack, err := futs[7].Result()
		require.NoError(t, err)
		ev, err := Get(ctx, e.nc, streams.Events, ack.Pos(), level)
		require.NoError(t, err)
		require.Equal(t, "e7", string(ev.Data))
		_, err = Get(ctx, e.nc, streams.Events, Position{Seq: 1 << 40}, level)
		require.ErrorIs(t, err, ErrNotFound)
		_, err = Get(ctx, e.nc, streams.Events, Position{Seq: ack.Seq, Index: 99}, level)
		require.ErrorIs(t, err, ErrNotFound)
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	e := newEnv(t, 1)
	p := e.publisher(t)
	ctx := clustertest.Context(t, 5*time.Second)
	for _, tc := range []struct {
		name string
		m    Message
		want error
	}{
		{"empty subject", Message{Data: []byte("x")}, ErrInvalidSubject},
		{"wildcard", Message{Subject: "events.*", Data: []byte("x")}, ErrInvalidSubject},
		{"empty token", Message{Subject: "events..x", Data: []byte("x")}, ErrInvalidSubject},
		{"too large", Message{Subject: "events.x", Data: make([]byte, 9<<20)}, ErrTooLarge},
		{"reserved header", Message{Subject: "events.x", Data: []byte("x"), Header: nats.Header{"Content-Encoding": {"gzip"}}}, ErrReservedHeader},
		{"unknown level", Message{Subject: "events.x", Data: []byte("x"), Level: 9}, ErrUnknownLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Publish(ctx, tc.m)
			require.ErrorIs(t, err, tc.want)
		})
	}
	require.NoError(t, p.Close(ctx))
	_, err := p.Publish(ctx, Message{Subject: "events.x", Data: []byte("x")})
	require.ErrorIs(t, err, ErrClosed)
}

func TestBackPressure(t *testing.T) {
	e := newEnv(t, 1)
	// No stream listens on nostream.>: every publish waits for its retry
	// deadline, so the pipeline and then the buffer fill up.
	p := e.publisher(t, WithMaxInFlight(1), WithBatch(1, 100), WithMaxBuffered(100), WithRetry(100*time.Millisecond, time.Minute))
	ctx := clustertest.Context(t, 10*time.Second)
	fill := func() error {
		for range 20 {
			if err := p.TryPublish(Message{Subject: "nostream.x", Data: make([]byte, 60)}, nil); err != nil {
				return err
			}
		}
		return nil
	}
	// The first event takes the only pipeline slot and keeps it while it
	// is retried; once the sender has taken it, nothing drains the buffer.
	require.NoError(t, p.TryPublish(Message{Subject: "nostream.x", Data: make([]byte, 60)}, nil))
	clustertest.Eventually(t, 5*time.Second, func() error {
		p.batches.mu.Lock()
		defer p.batches.mu.Unlock()
		if p.batches.buffered != 0 {
			return fmt.Errorf("%d bytes still buffered", p.batches.buffered)
		}
		return nil
	})
	require.ErrorIs(t, fill(), ErrBufferFull)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := p.PublishAsync(short, Message{Subject: "nostream.x", Data: make([]byte, 60)})
	require.ErrorIs(t, err, context.DeadlineExceeded, "a blocking publish waits for room until its context ends")

	// Closing with a short deadline fails what is still pending.
	cctx, ccancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer ccancel()
	require.ErrorIs(t, p.Close(cctx), context.DeadlineExceeded)
	_, err = p.PublishAsync(ctx, Message{Subject: "events.x", Data: []byte("x")})
	require.ErrorIs(t, err, ErrClosed)
}

// TestMaxBatchesInFlight: with one batch in flight, full batches (here
// every batch but the last) are not held back by the cap, the pipeline
// still bounds the stream messages in flight, and every event arrives.
// TestBatcherFullBatchSkipsCap shows that an open batch waits for the cap.
func TestMaxBatchesInFlight(t *testing.T) {
	e := newEnv(t, 1)
	_, err := NewPublisher(e.js, WithMaxBatchesInFlight(-1))
	require.Error(t, err, "a negative cap is refused")

	const batch, n, pipeline = 10, 2000, 64
	p := e.publisher(t, WithMaxBatchesInFlight(1), WithBatch(batch, 1<<20), WithMaxInFlight(pipeline))
	ctx := clustertest.Context(t, 30*time.Second)
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				peak <- most
				return
			default:
			}
			p.flight.mu.Lock()
			most = max(most, len(p.flight.inflight))
			p.flight.mu.Unlock()
			runtime.Gosched()
		}
	}()
	futs := make([]*Future, n)
	for i := range futs {
		f, err := p.PublishAsync(ctx, Message{Subject: "events.batches", Data: fmt.Appendf(nil, "e%d", i)})
		require.NoError(t, err)
		futs[i] = f
	}
	for i, f := range futs {
		_, err := f.Result()
		require.NoError(t, err, "event %d", i)
	}
	close(stop)
	most := <-peak
	require.Positive(t, most)
	require.LessOrEqual(t, most, pipeline, "messages in flight never exceed the pipeline")
	require.Len(t, readAll(t, e.js, n, WithFilter("events.batches")), n)
}
