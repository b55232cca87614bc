package accrual

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/membership"
)

func TestQualityClasses(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64 // relative
		loss   float64
		rtt    float64 // relative, 0 = not probed
		want   membership.Quality
	}{
		{"quiet path", 0.02, 0, 0.005, membership.Excellent},
		{"unprobed quiet path", 0.02, 0, 0, membership.Excellent},
		{"some jitter", 0.15, 0, 0, membership.Good},
		{"jitter", 0.3, 0, 0, membership.Fair},
		{"heavy jitter", 0.5, 0, 0, membership.Poor},
		{"wild jitter", 0.9, 0, 0, membership.VeryPoor},
		{"loss dominates", 0.02, 0.1, 0, membership.Poor},
		{"slow round trip dominates", 0.02, 0, 0.07, membership.Fair},
		{"worst signal wins", 0.15, 0.05, 0.3, membership.VeryPoor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pathStats{jitter: tt.jitter, loss: tt.loss, rtt: tt.rtt}
			require.Equal(t, tt.want, p.classify())
		})
	}
}

func TestQualityMultiplierWidensWithWorseClass(t *testing.T) {
	prev := 0.0
	for q := membership.Excellent; q <= membership.VeryPoor; q++ {
		require.Greater(t, multiplier(q), prev, "%s", q)
		prev = multiplier(q)
	}
	require.Equal(t, 1.0, multiplier(membership.Excellent))
	require.Equal(t, 3.0, multiplier(membership.VeryPoor))
}

func TestQualityHysteresis(t *testing.T) {
	p := pathStats{jitter: 0.25}
	require.Equal(t, membership.Fair, p.classify())
	p.jitter = 0.19 // just under Good's bound: not enough to be promoted
	require.Equal(t, membership.Fair, p.classify())
	p.jitter = 0.15
	require.Equal(t, membership.Good, p.classify())
	p.jitter = 0.19 // demotion needs the plain bound
	require.Equal(t, membership.Good, p.classify())
}

func TestQualityFromObservations(t *testing.T) {
	var p pathStats
	for range 200 {
		p.observeGap(100, 100)
		p.observeLoss(0)
		p.observeRTT(0.5, 100)
	}
	require.Equal(t, membership.Excellent, p.classify())
	for i := range 200 {
		gap := 60.0
		if i%2 == 0 {
			gap = 140
		}
		p.observeGap(gap, 100)
		p.observeLoss(uint64(i % 5 / 4)) // a loss before one heartbeat in five
	}
	require.Equal(t, membership.Poor, p.classify(), "jitter 0.4, loss 0.1")
	for range 200 {
		p.observeGap(250, 100)
	}
	require.Equal(t, membership.VeryPoor, p.classify(), "jitter 1.5")
}
