package replicator

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// takeResult is what batcher.take returned.
type takeResult struct {
	b       *batch
	grouped bool
}

// TestBatcherFullBatchSkipsCap: with the batch slots taken, an open batch
// waits (and grows) until a slot frees, but a full batch is taken at once
// without a slot.
func TestBatcherFullBatchSkipsCap(t *testing.T) {
	cfg := defaultConfig()
	cfg.maxBatchEvents = 3
	b := newBatcher(cfg, newMetrics(nil))
	stop := make(chan struct{})
	defer close(stop)
	slots := make(chan struct{}, 1)
	slots <- struct{}{} // one batch in flight
	add := func(n int) {
		for range n {
			require.NoError(t, b.add(context.Background(), &pending{msg: Message{Subject: "events.x"}, level: Async, size: 1}, false))
		}
	}
	taken := make(chan takeResult, 1)
	takeAsync := func() {
		go func() {
			out, grouped := b.take(stop, slots)
			taken <- takeResult{out, grouped}
		}()
	}
	recv := func() takeResult {
		select {
		case r := <-taken:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("take did not return")
			return takeResult{}
		}
	}

	add(2)
	takeAsync()
	select {
	case r := <-taken:
		t.Fatalf("took an open batch of %d events without a slot", len(r.b.events))
	case <-time.After(50 * time.Millisecond):
	}
	add(2) // the third event fills the batch, the fourth opens the next
	r := recv()
	require.Len(t, r.b.events, 3, "the full batch")
	require.False(t, r.grouped, "a full batch takes no slot")
	require.Len(t, slots, 1)

	takeAsync()
	<-slots // the batch in flight is stored
	r = recv()
	require.Len(t, r.b.events, 1, "the open batch, once a slot is free")
	require.True(t, r.grouped)
	require.Len(t, slots, 1, "it holds the slot")
}
