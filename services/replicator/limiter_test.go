package replicator

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimitersAdmitAndForget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	topics, clients := newLimiters(10, 2), newLimiters(100, 100)

	// A topic's burst passes, the next event waits about 1/rate.
	require.Zero(t, admit(topics, clients, "t", "c", now))
	require.Zero(t, admit(topics, clients, "t", "c", now))
	wait := admit(topics, clients, "t", "c", now)
	require.InDelta(t, 100*time.Millisecond, wait, float64(5*time.Millisecond))
	// A refusal takes no token from the other bucket: the client still has
	// 98 of its 100, and another topic is unaffected.
	for i := range 98 {
		require.Zero(t, admit(topics, clients, fmt.Sprintf("other-%d", i%49), "c", now), "event %d", i)
	}
	require.Positive(t, admit(topics, clients, "fresh", "c", now), "client bucket spent")

	// Buckets idle long enough to refill are forgotten; recent ones stay.
	require.Equal(t, 51, topics.size(), "t, 49 others and fresh")
	later := now.Add(2 * time.Minute)
	require.Zero(t, admit(topics, nil, "recent", "", later))
	topics.sweep(later)
	require.Equal(t, 1, topics.size(), "only the bucket used at sweep time remains")

	// No limits configured: everything passes, nothing is kept.
	require.Zero(t, admit(nil, nil, "t", "c", now))
	require.Zero(t, (*limiters)(nil).size())
}
