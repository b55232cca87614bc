package accrual

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/platform/platform/membership"
)

// TestSurvivorsOfAKillAreNotBlamed kills one of three instances under
// load, as SIGKILL does: its last heartbeats looked like everyone's. The
// survivors then take its share (more requests, CPU and in-flight: a
// shared load spike). The predictor learns from the death, but since
// nothing set the victim's last heartbeats apart from healthy ones, the
// survivors' failure probability must stay below 0.2; it went to
// 0.46-0.81 when replayed positives taught the model a base rate of
// deaths near one in three.
func TestSurvivorsOfAKillAreNotBlamed(t *testing.T) {
	for _, kills := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d kills", kills), func(t *testing.T) {
			tab := testTable(t, func(o *Options) { *o = LocalOptions(); o.Seed = 1 })
			rng := rand.New(rand.NewPCG(3, 3))
			load := func(share float64) Load {
				return Load{
					IntervalMS: 100, CPU: min(0.3*share+0.03*rng.NormFloat64(), 1), Mem: 0.4,
					LatencyMS: 2 * share * (1 + 0.1*rng.NormFloat64()), P99MS: 8 * share * (1 + 0.2*rng.NormFloat64()),
					RPS: 1000 * share * (1 + 0.05*rng.NormFloat64()), InFlight: int64(10 * share),
				}
			}
			seqs := map[string]uint64{}
			now := time.Duration(0)
			send := func(inst string, l Load) {
				seqs[inst]++
				l.Seq = seqs[inst]
				l.CPU, l.LatencyMS, l.P99MS = max(l.CPU, 0), max(l.LatencyMS, 0), max(l.P99MS, 0)
				tab.Heartbeat("platform-txn", inst, l, now)
			}
			// run sends heartbeats of live every 100 ms for d, each carrying
			// share of the load, ticking as the detector does.
			run := func(live []string, share float64, d time.Duration, check func()) {
				for end := now + d; now < end; now += 100 * time.Millisecond {
					for _, in := range live {
						send(in, load(share))
					}
					tab.Tick(now, true, 1000)
					if check != nil {
						check()
					}
				}
			}
			worst := 0.0
			for k := range kills {
				victim := fmt.Sprintf("v%d", k)
				run([]string{"a", "b", victim}, 1, 60*time.Second, nil)
				// The victim is killed: the survivors take its share.
				run([]string{"a", "b"}, 1.5, 20*time.Minute, func() {
					for _, in := range []string{"a", "b"} {
						worst = max(worst, tab.Probability("platform-txn."+in))
					}
				})
				if st, _ := tab.State("platform-txn." + victim); st != membership.Dead {
					t.Fatalf("victim %s is %s, want dead", victim, st)
				}
			}
			st := tab.Stats()
			t.Logf("survivors' highest failure probability %.3f; trained on %d positives, %d negatives", worst, st.Positives, st.Negatives)
			if st.Positives == 0 {
				t.Fatal("the death taught nothing: the test does not exercise the predictor")
			}
			if worst >= 0.2 {
				t.Errorf("survivors' failure probability reached %.3f, want below 0.2", worst)
			}
		})
	}
}
