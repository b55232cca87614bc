package detector

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQualityClasses(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64 // relative
		loss   float64
		rtt    float64 // relative, 0 = not probed
		want   Quality
	}{
		{"quiet path", 0.02, 0, 0.005, Excellent},
		{"unprobed quiet path", 0.02, 0, 0, Excellent},
		{"some jitter", 0.15, 0, 0, Good},
		{"jitter", 0.3, 0, 0, Fair},
		{"heavy jitter", 0.5, 0, 0, Poor},
		{"wild jitter", 0.9, 0, 0, VeryPoor},
		{"loss dominates", 0.02, 0.1, 0, Poor},
		{"slow round trip dominates", 0.02, 0, 0.07, Fair},
		{"worst signal wins", 0.15, 0.05, 0.3, VeryPoor},
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
	for q := Excellent; q <= VeryPoor; q++ {
		require.Greater(t, q.Multiplier(), prev, "%s", q)
		prev = q.Multiplier()
	}
	require.Equal(t, 1.0, Excellent.Multiplier())
	require.Equal(t, 3.0, VeryPoor.Multiplier())
}

func TestQualityHysteresis(t *testing.T) {
	p := pathStats{jitter: 0.25}
	require.Equal(t, Fair, p.classify())
	p.jitter = 0.19 // just under Good's bound: not enough to be promoted
	require.Equal(t, Fair, p.classify())
	p.jitter = 0.15
	require.Equal(t, Good, p.classify())
	p.jitter = 0.19 // demotion needs the plain bound
	require.Equal(t, Good, p.classify())
}

func TestQualityFromObservations(t *testing.T) {
	var p pathStats
	for range 200 {
		p.observeGap(100, 100)
		p.observeLoss(0)
		p.observeRTT(0.5, 100)
	}
	require.Equal(t, Excellent, p.classify())
	for i := range 200 {
		gap := 60.0
		if i%2 == 0 {
			gap = 140
		}
		p.observeGap(gap, 100)
		p.observeLoss(uint64(i % 5 / 4)) // a loss before one heartbeat in five
	}
	require.Equal(t, Poor, p.classify(), "jitter 0.4, loss 0.1")
	for range 200 {
		p.observeGap(250, 100)
	}
	require.Equal(t, VeryPoor, p.classify(), "jitter 1.5")
}

func TestQualityJSON(t *testing.T) {
	for q := Excellent; q <= VeryPoor; q++ {
		b, err := json.Marshal(q)
		require.NoError(t, err)
		var back Quality
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, q, back)
	}
	var q Quality
	require.Error(t, json.Unmarshal([]byte(`"superb"`), &q))
	require.Equal(t, `"very_poor"`, string(must(json.Marshal(VeryPoor))))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
