package replicator

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPublishRoundTrip(t *testing.T) {
	e := newEnv(t, 1)
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"per event", nil},
		{"envelope", []Option{WithEnvelope(), WithLinger(5 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subj := "events.rt." + fmt.Sprint(len(tc.opts))
			p := e.publisher(t, tc.opts...)
			ctx := testCtx(t, 20*time.Second)
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
