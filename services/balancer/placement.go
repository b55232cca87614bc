package balancer

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
)

// LeaderPlacer counts and evens out stream and consumer RAFT leaders
// across nodes. Package leaders provides one with jsm.go, which links
// nats-server; the balancer takes it as an option so that importing the
// Router or the records links no server.
type LeaderPlacer interface {
	// Counts returns the stream and consumer leaders per node.
	Counts(nc *nats.Conn) (map[string]int, error)
	// Balance moves leaders until no node leads more than one group
	// above another, and reports what it did.
	Balance(ctx context.Context, nc *nats.Conn, log *slog.Logger) (LeaderReport, error)
}

// LeaderReport says what a leader balancing pass found and did.
type LeaderReport struct {
	// Before and After count stream and consumer leaders per node.
	Before map[string]int `json:"before"`
	After  map[string]int `json:"after"`
	// Moved is how many leaders were asked to step down.
	Moved int `json:"moved"`
}

// Skew returns the largest difference in leaders between two nodes.
func Skew(leaders map[string]int) int {
	if len(leaders) == 0 {
		return 0
	}
	lo, hi := -1, 0
	for _, n := range leaders {
		hi = max(hi, n)
		if lo < 0 || n < lo {
			lo = n
		}
	}
	return hi - lo
}
