package accrual

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPhi(t *testing.T) {
	tests := []struct {
		name             string
		elapsed, mean, s float64
		wantMin, wantMax float64
	}{
		{"at the mean phi is log10(2)", 100, 100, 10, 0.30, 0.31},
		{"early is near zero", 50, 100, 10, 0, 0.01},
		{"five deviations late is about 7 (the logistic approximation)", 150, 100, 10, 6.5, 7.5},
		{"far past the mean is large", 1000, 100, 10, 100, math.Inf(1)},
		{"zero deviation does not divide by zero", 101, 100, 0, 1, math.Inf(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Phi(tt.elapsed, tt.mean, tt.s)
			require.False(t, math.IsNaN(got))
			require.GreaterOrEqual(t, got, tt.wantMin)
			require.LessOrEqual(t, got, tt.wantMax)
		})
	}
}

func TestPhiIsMonotonic(t *testing.T) {
	prev := -1.0
	for e := 0.0; e < 500; e += 0.5 {
		p := Phi(e, 100, 20)
		require.GreaterOrEqual(t, p, prev, "phi fell at %v ms", e)
		prev = p
	}
}

func TestPhiZInvertsPhi(t *testing.T) {
	for _, threshold := range []float64{0.5, 1, 3, 8, 12} {
		z := PhiZ(threshold)
		got := Phi(100+z*10, 100, 10)
		require.InDelta(t, threshold, got, 1e-6, "threshold %v: z=%v", threshold, z)
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(4)
	require.Zero(t, w.Mean())
	for _, x := range []float64{10, 20, 30, 40, 50, 60} {
		w.Add(x)
	}
	require.Equal(t, 4, w.Len(), "keeps the newest four")
	require.InDelta(t, 45, w.Mean(), 1e-9)
	require.InDelta(t, math.Sqrt(125), w.StdDev(), 1e-6)
	w.Reset()
	require.Zero(t, w.Len())
}

func TestWindowSumsDoNotDrift(t *testing.T) {
	w := NewWindow(100)
	for i := range 1_000_000 {
		w.Add(100 + float64(i%7))
	}
	var sum float64
	for i := range w.n {
		sum += float64(w.buf[i])
	}
	require.InDelta(t, sum/100, w.Mean(), 1e-9)
}

func TestWindowValuesOldestFirst(t *testing.T) {
	w := NewWindow(3)
	if got := w.Values(); len(got) != 0 {
		t.Fatalf("empty window: %v", got)
	}
	for i, want := range [][]float64{{1}, {1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}} {
		w.Add(float64(i + 1))
		if got := w.Values(); !slices.Equal(got, want) {
			t.Fatalf("after %d adds: %v, want %v", i+1, got, want)
		}
	}
}
