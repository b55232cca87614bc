package detectorbench

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The GC class's pauses come from a heavy-tailed law in wall time: most
// are short, some pass 20 intervals, whatever the detector tolerates.
func TestMixedTraceHasHeavyTailedPauses(t *testing.T) {
	tr := generateMixed(TraceOptions{Instances: 200, Duration: 120 * time.Second, Interval: 100 * time.Millisecond, Seed: 3})
	classes := map[Class]int{}
	var pauses []float64
	for _, in := range tr.instances {
		classes[in.class]++
		for _, s := range in.stalls {
			pauses = append(pauses, float64(s[1]-s[0])/float64(100*time.Millisecond))
		}
	}
	for _, c := range classMix {
		require.Positive(t, classes[c.class], "class %s in the fleet", c.class)
	}
	short, long := 0, 0
	for _, p := range pauses {
		if p < 3 {
			short++
		}
		if p >= 20 {
			long++
		}
	}
	require.Greater(t, short, len(pauses)/2, "most pauses are short")
	require.Positive(t, long, "some pauses last 20 intervals or more")
}

// TestEvaluationTargets plays smaller traces than `platform bench
// detector` and checks what the comparison claims: each baseline's chosen
// configuration is its best with no false positive on the training
// traces; on held-out traces ours, with its defaults, has no false
// positive after the warm-up, finds crashes (the connection closes) with
// a P99 at least 30% lower than each baseline's and quiet instances'
// deaths sooner; the predictor keeps its ROC AUC and lead.
func TestEvaluationTargets(t *testing.T) {
	t.Parallel()
	rep, err := Evaluate(EvalOptions{Trace: TraceOptions{Instances: 100, Duration: 90 * time.Second, Seed: 5}, Train: 1, Held: 1, Tick: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Logf("\n%s", rep)
	held := func(det string, class Class, kind string) Score {
		for _, s := range rep.Scores {
			if s.Detector == det && s.Class == class && s.Kind == kind && s.Traces == "held-out mixed" {
				return s
			}
		}
		t.Fatalf("no held-out score for %s/%s/%s", det, class, kind)
		return Score{}
	}
	for _, base := range []string{NameFixed, NamePhi} {
		chosen := held(base, "", "")
		bestP99 := math.Inf(1)
		for _, s := range rep.Sweep {
			if s.Detector == base && s.FalseVerdicts == 0 {
				bestP99 = min(bestP99, s.P99MS)
			}
			if s.Detector == base && s.Config == chosen.Config {
				require.Zero(t, s.FalseVerdicts, "%s: chosen %q has false positives in training", base, s.Config)
			}
		}
		for _, s := range rep.Sweep {
			if s.Detector == base && s.Config == chosen.Config {
				require.Equal(t, bestP99, s.P99MS, "%s: chosen %q is not the best training P99", base, s.Config)
			}
		}
		ours, theirs := held(NameOurs, "", KindCrash), held(base, "", KindCrash)
		require.Positive(t, ours.Deaths)
		require.LessOrEqual(t, ours.P99MS, 0.7*theirs.P99MS, "crash P99: ours vs %s", base)
		require.Less(t, held(NameOurs, ClassQuiet, "").P99MS, held(base, ClassQuiet, "").P99MS, "quiet P99: ours vs %s", base)
	}
	all := held(NameOurs, "", "")
	require.Equal(t, all.Deaths, all.Detected)
	require.Zero(t, all.FalseVerdicts, "ours: false positives after the warm-up")
	requirePlot(t, rep)

	p := rep.Predictor
	require.GreaterOrEqual(t, p.AUC, 0.9)
	require.GreaterOrEqual(t, p.LeadP50, 10.0)
}

func TestTracesAreDeterministic(t *testing.T) {
	opts := TraceOptions{Instances: 5, Duration: 5 * time.Second, Interval: 100 * time.Millisecond, Seed: 9}
	a, b := generateMixed(opts), generateMixed(opts)
	for i := range a.instances {
		require.Equal(t, a.instances[i].beats, b.instances[i].beats)
	}
	opts.Seed = 10
	c := generateMixed(opts)
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

// requirePlot draws rep and checks the file is well-formed SVG with ours in
// the legend.
func requirePlot(t *testing.T, rep Report) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "eval.svg")
	require.NoError(t, rep.Plot(file))
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte("<svg ")), "an SVG document")
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "well-formed XML")
	}
	require.Contains(t, string(b), ">ours (defaults)</text>")
}

func TestPlot(t *testing.T) {
	rep := Report{
		Trace: TraceOptions{Instances: 3},
		Held:  1,
		Points: []Score{
			{Detector: NameFixed, Config: "timeout=1s", P99MS: 1200, FalsePer1kHours: 0},
			{Detector: NamePhi, Config: "phi=8, window=100", P99MS: 2500, FalsePer1kHours: 40},
			{Detector: NamePhi, Config: "phi=8, window=200", P99MS: math.Inf(1)},
			{Detector: "x<&>", Config: "odd", P99MS: 900, FalsePer1kHours: 1e5},
		},
		Scores: []Score{
			{Detector: NameOurs, Config: "defaults", Traces: "held-out, all", P99MS: 800},
			{Detector: NameFixed, Config: "timeout=1s", Traces: "held-out, all", P99MS: 1200},
		},
	}
	requirePlot(t, rep)
	require.Error(t, rep.Plot(filepath.Join(t.TempDir(), "eval.png")), "only SVG")
}
