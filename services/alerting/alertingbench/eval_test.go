package alertingbench

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMeasureEval(t *testing.T) {
	for _, scoped := range []bool{true, false} {
		r, err := MeasureEval(EvalOptions{Rules: 100, Series: 1000, Runs: 3, Scoped: scoped})
		require.NoError(t, err)
		require.EqualValues(t, 3, r.Events)
		require.Positive(t, r.Extra["firing"], "some rules fire")
		t.Logf("%s: mean %.2f ms, firing %v", r.Name, r.Extra["mean_ms"], r.Extra["firing"])
	}
}

func BenchmarkEval(b *testing.B) {
	for b.Loop() {
		r, err := MeasureEval(EvalOptions{Scoped: true, Runs: 5})
		require.NoError(b, err)
		b.ReportMetric(r.Extra["mean_ms"], "ms/eval")
	}
}
