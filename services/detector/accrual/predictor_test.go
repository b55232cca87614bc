package accrual

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPredictorAnswersThePriorUntaught(t *testing.T) {
	p := newPredictor(0.05, 1, rand.New(rand.NewPCG(1, 1)))
	var tr trend
	f := tr.observe(Load{CPU: 0.99, ErrorRate: 0.9, P99MS: 5000}, 5, 1)
	require.InDelta(t, priorProbability, p.probability(&f), 1e-9)
}

func TestTrendSeparatesHotFromHeatingUp(t *testing.T) {
	var hot, heating trend
	var fh, fu features
	for i := range 200 {
		fh = hot.observe(Load{CPU: 0.9}, 0, 0)
		fu = heating.observe(Load{CPU: 0.2 + 0.7*math.Max(0, float64(i-180))/20}, 0, 0)
	}
	require.InDelta(t, fh[fLevel+mCPU], fu[fLevel+mCPU], 0.05, "about the same level now")
	require.Less(t, fh[fTrend+mCPU], float32(0.01))
	require.Greater(t, fu[fTrend+mCPU], float32(0.2), "only the heating one trends up")
}

func TestTrendRingKeepsTheHorizon(t *testing.T) {
	var tr trend
	for i := range 25 {
		f := features{float32(i)}
		old, evicted := tr.push(f, 20)
		require.Equal(t, i >= 20, evicted)
		if evicted {
			require.Equal(t, float32(i-20), old[0])
		}
	}
	got := tr.drain()
	require.Len(t, got, 20)
	require.Equal(t, float32(5), got[0][0], "oldest first")
	require.Equal(t, float32(24), got[19][0])
	require.Empty(t, tr.drain())
}

// TestPredictorLearnsFromDeaths runs the membership table over a fleet in
// which some instances degrade and die; the model must then rank a fresh
// degrading instance above fresh healthy ones, well before it dies.
func TestPredictorLearnsFromDeaths(t *testing.T) {
	tab := testTable(t, func(o *Options) { o.ConfirmDeath = time.Second })
	rng := rand.New(rand.NewPCG(7, 7))
	healthy := func() Load {
		return Load{IntervalMS: 100, CPU: 0.3 + 0.05*rng.NormFloat64(), Mem: 0.5, LatencyMS: 10 * (1 + 0.1*rng.NormFloat64()), P99MS: 40 * (1 + 0.2*rng.NormFloat64()), RPS: 100}
	}
	dying := func(ramp float64) Load {
		l := healthy()
		l.CPU = math.Min(1, l.CPU+0.6*ramp)
		l.P99MS *= 1 + 10*ramp
		l.ErrorRate = 0.2 * ramp * ramp
		return l
	}
	clamp := func(l Load) Load {
		l.CPU = math.Min(math.Max(l.CPU, 0), 1)
		l.LatencyMS, l.P99MS = math.Max(l.LatencyMS, 0), math.Max(l.P99MS, 0)
		return l
	}
	now := time.Duration(0)
	seqs := map[string]uint64{}
	send := func(inst string, l Load) {
		seqs[inst]++
		l.Seq = seqs[inst]
		tab.Heartbeat("svc", inst, clamp(l), now)
	}
	// Ten rounds: 20 healthy instances live on, 4 degrade over 60
	// heartbeats and die.
	for round := range 10 {
		for k := range 120 {
			for h := range 20 {
				send("h"+strconv.Itoa(h), healthy())
			}
			if k < 60 {
				for d := range 4 {
					send("d"+strconv.Itoa(round)+"-"+strconv.Itoa(d), dying(float64(k)/60))
				}
			}
			now += 100 * time.Millisecond
			tab.Tick(now, true, 0)
		}
	}
	require.Positive(t, tab.pred.positives)
	require.Positive(t, tab.pred.negatives)

	// A fresh instance on its way down, scored heartbeat by heartbeat.
	var probs []float64
	for k := range 60 {
		send("fresh", dying(float64(k)/60))
		probs = append(probs, tab.Probability("svc.fresh"))
	}
	var healthyMax float64
	for h := range 20 {
		healthyMax = math.Max(healthyMax, tab.Probability("svc.h"+strconv.Itoa(h)))
	}
	require.Less(t, healthyMax, 0.5, "healthy instances are not alarmed")
	require.Greater(t, probs[len(probs)-10], 0.5, "ten heartbeats before death the probability is up: %v", probs)
	require.Greater(t, probs[len(probs)-1], probs[5], "the probability rises as it degrades")
}
