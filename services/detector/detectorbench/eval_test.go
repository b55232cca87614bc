package detectorbench

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEvaluationTargets plays smaller traces than `platform bench
// detector` (to stay quick under -race) and checks the issue's targets:
// P99 detection within 1 s on the steady trace at 100 ms heartbeats, no
// false positives on the pause and degrading traces where the fixed
// timeout has some, and a predictor with ROC AUC >= 0.9 on a held-out
// trace that warns at least 10 heartbeats ahead.
func TestEvaluationTargets(t *testing.T) {
	t.Parallel()
	rep, err := Evaluate(EvalOptions{Trace: TraceOptions{Instances: 80, Duration: 60 * time.Second, Seed: 1}})
	require.NoError(t, err)
	t.Logf("\n%s", rep)
	score := func(sc Scenario, det string) Score {
		for _, s := range rep.Scores {
			if s.Scenario == sc && s.Detector == det {
				return s
			}
		}
		t.Fatalf("no score for %s/%s", sc, det)
		return Score{}
	}
	steady := score(Steady, NameOurs)
	require.Positive(t, steady.Deaths)
	require.Equal(t, steady.Deaths, steady.Detected)
	require.LessOrEqual(t, steady.P99MS, 1000.0, "steady P99 detection")
	for _, sc := range []Scenario{Pauses, Degrading} {
		require.Zero(t, score(sc, NameOurs).FalsePositives, "%s: ours", sc)
		require.Positive(t, score(sc, NameFixed).FalsePositives, "%s: the fixed timeout should be fooled", sc)
	}
	for _, sc := range Scenarios {
		s := score(sc, NameOurs)
		require.Zero(t, s.FalsePositives, "%s: ours", sc)
		require.Less(t, s.P50MS, score(sc, NamePhiDefault).P50MS, "%s: faster than Akka's defaults", sc)
	}
	p := rep.Predictor
	require.GreaterOrEqual(t, p.AUC, 0.9)
	require.GreaterOrEqual(t, p.LeadP50, 10.0)
}

func TestTracesAreDeterministic(t *testing.T) {
	opts := TraceOptions{Instances: 5, Duration: 5 * time.Second, Interval: 100 * time.Millisecond, Seed: 9}
	a, b := generateTrace(Pauses, opts), generateTrace(Pauses, opts)
	for i := range a.instances {
		require.Equal(t, a.instances[i].beats, b.instances[i].beats)
	}
	opts.Seed = 10
	c := generateTrace(Pauses, opts)
	require.NotEqual(t, a.instances[0].beats, c.instances[0].beats)
}

func TestScaleMeasurementKeepsUp(t *testing.T) {
	if testing.Short() {
		t.Skip("measures CPU")
	}
	r, err := MeasureScale(ScaleOptions{Instances: 2000, Seconds: 5})
	require.NoError(t, err)
	require.EqualValues(t, 10000, r.Heartbeats)
	// The real figure comes from `platform bench detector` (10,000
	// instances, no race detector); here only that the path works and
	// writes stay bounded: joins plus refreshes, not one per heartbeat.
	require.Less(t, r.WritesPerSec, 2000.0/5+2000.0/10+1)
}

func TestAUC(t *testing.T) {
	require.Equal(t, 1.0, auc([]float64{0.9, 0.8}, []float64{0.1, 0.2}))
	require.Equal(t, 0.0, auc([]float64{0.1}, []float64{0.9}))
	require.Equal(t, 0.5, auc([]float64{0.5}, []float64{0.5}))
	require.True(t, math.IsNaN(auc(nil, []float64{1})))
}
