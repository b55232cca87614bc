package accrual

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/membership"
)

// ms converts a test's millisecond count into a time since the epoch.
func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

func testTable(t *testing.T, mutate ...func(*Options)) *Table {
	t.Helper()
	o := DefaultOptions()
	o.Seed = 1
	for _, m := range mutate {
		m(&o)
	}
	tab, err := NewTable(o, time.Unix(1_700_000_000, 0))
	require.NoError(t, err)
	return tab
}

// beat sends heartbeats for key from..to (ms) every interval, with seq
// continuing from *seq.
func beat(tab *Table, svc, inst string, from, to, every int64, seq *uint64) {
	for at := from; at <= to; at += every {
		*seq++
		tab.Heartbeat(svc, inst, Load{Seq: *seq, IntervalMS: every}, ms(at))
	}
}

// until ticks every 10 ms from (ms) to to (ms) and returns the time each
// state was first published for key.
func until(tab *Table, key string, from, to int64) map[membership.State]int64 {
	first := map[membership.State]int64{}
	for now := from; now <= to; now += 10 {
		for _, tr := range tab.Tick(ms(now), true, 1000).Transitions {
			if tr.Key() == key {
				if _, ok := first[tr.State]; !ok {
					first[tr.State] = now
				}
			}
		}
	}
	return first
}

func TestStatesAliveSuspectDeadAlive(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "i1", 0, 5000, 100, &seq)
	got := until(tab, "demo.i1", 0, 5000)
	require.Contains(t, got, membership.Alive)
	require.NotContains(t, got, membership.Suspect, "regular heartbeats are never suspect")

	got = until(tab, "demo.i1", 5010, 7000) // silence from 5000
	require.Contains(t, got, membership.Suspect)
	require.Contains(t, got, membership.Dead)
	require.Less(t, got[membership.Suspect], got[membership.Dead])
	silent := got[membership.Dead] - 5000
	require.GreaterOrEqual(t, silent, int64(600), "dead after %d ms of silence: too quick for 100 ms heartbeats", silent)
	require.LessOrEqual(t, silent, int64(900), "dead after %d ms of silence: the 1 s target needs less", silent)

	beat(tab, "demo", "i1", 7000, 7000, 100, &seq)
	got = until(tab, "demo.i1", 7000, 7100)
	require.Contains(t, got, membership.Alive, "a heartbeat after death revives")
}

func TestLeavingIsLeftNeverDead(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "i1", 0, 1000, 100, &seq)
	seq++
	tab.Heartbeat("demo", "i1", Load{Seq: seq, Leaving: true}, ms(1100))
	got := until(tab, "demo.i1", 0, 60_000)
	require.Contains(t, got, membership.Left)
	require.NotContains(t, got, membership.Dead)
	require.NotContains(t, got, membership.Suspect)
	st, _ := tab.State("demo.i1")
	require.Equal(t, membership.Left, st)
}

func TestEmptyHeartbeatsUseMeasuredInterval(t *testing.T) {
	tab := testTable(t)
	// nats pub hb.demo.i1 '{}' --count 20 --sleep 100ms
	for i := range int64(20) {
		tab.Heartbeat("demo", "i1", Load{}, ms(i*100))
	}
	got := until(tab, "demo.i1", 0, 4000)
	require.Contains(t, got, membership.Suspect)
	require.Contains(t, got, membership.Dead)
	require.Less(t, got[membership.Dead]-1900, int64(1000), "dead %d ms after the last heartbeat", got[membership.Dead]-1900)
}

func TestLearnedPauseIsToleratedNextTime(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "gc", 0, 3000, 100, &seq)
	// A 1.2 s stall: longer than a first pause is allowed, so it is
	// declared dead; the sequence continues, so it was a stall.
	got := until(tab, "demo.gc", 0, 4200)
	require.Contains(t, got, membership.Dead)
	beat(tab, "demo", "gc", 4200, 8000, 100, &seq)
	until(tab, "demo.gc", 4200, 8000)
	// The same stall again is now expected.
	got = until(tab, "demo.gc", 8010, 9200)
	require.NotContains(t, got, membership.Dead, "a stall the instance recovered from before is tolerated")
	beat(tab, "demo", "gc", 9200, 9200, 100, &seq)
}

func TestRestartAndReorder(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "i1", 0, 2000, 100, &seq)
	// A late duplicate of an old heartbeat is ignored.
	tab.Heartbeat("demo", "i1", Load{Seq: 5, IntervalMS: 100}, ms(2050))
	require.EqualValues(t, 1, tab.Stats().Reordered)
	// A restart: the sequence starts again.
	tab.Heartbeat("demo", "i1", Load{Seq: 1, IntervalMS: 100}, ms(2100))
	require.EqualValues(t, 1, tab.Stats().Restarts)
	st, _ := tab.State("demo.i1")
	require.Equal(t, membership.Alive, st)
}

func TestStandbyPublishesNothingThenTheDifference(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "a", 0, 1000, 100, &seq)
	seq = 0
	beat(tab, "demo", "b", 0, 3000, 100, &seq)
	// What the active detector published, as followed through MEMBERS.
	tab.Adopt(membership.Member{Service: "demo", Instance: "a", State: membership.Alive}, ms(1000), false)
	tab.Adopt(membership.Member{Service: "demo", Instance: "b", State: membership.Alive}, ms(1000), false)
	for now := int64(0); now <= 3000; now += 10 {
		res := tab.Tick(ms(now), false, 1000)
		require.Empty(t, res.Transitions)
		require.Empty(t, res.Writes)
	}
	res := tab.Tick(ms(3010), true, 0) // taking over
	require.Len(t, res.Transitions, 1, "only a changed: %+v", res.Transitions)
	require.Equal(t, "a", res.Transitions[0].Instance)
	require.Equal(t, membership.Dead, res.Transitions[0].State)
	require.Equal(t, membership.Alive, res.Transitions[0].Previous)
}

func TestAdoptedSilentMemberIsDeclaredDead(t *testing.T) {
	tab := testTable(t)
	tab.Adopt(membership.Member{Service: "old", Instance: "x", State: membership.Alive}, 0, true)
	got := until(tab, "old.x", 0, 20_000)
	require.Contains(t, got, membership.Dead, "an instance recorded alive that never heartbeats again dies")
	require.NotContains(t, got, membership.Alive, "adoption is not a transition")
}

func TestWritesAreBoundedNotPerHeartbeat(t *testing.T) {
	tab := testTable(t) // refresh every 10 s
	const n = 1000
	seqs := make([]uint64, n)
	writes := 0
	for now := int64(0); now <= 30_000; now += 100 {
		if now%1000 == 0 {
			for i := range n {
				seqs[i]++
				tab.Heartbeat("svc", "i"+strconv.Itoa(i), Load{Seq: seqs[i], IntervalMS: 1000}, ms((now + int64(i))))
			}
		}
		res := tab.Tick(ms(now), true, 200)
		writes += len(res.Writes)
	}
	// 1000 joins, then one refresh per member per 10 s: about 4000, not
	// the 31,000 heartbeats.
	require.Greater(t, writes, 3000)
	require.Less(t, writes, 5500)
}

func TestForgetAfter(t *testing.T) {
	tab := testTable(t, func(o *Options) { o.ForgetAfter = time.Minute })
	var seq uint64
	beat(tab, "demo", "gone", 0, 500, 100, &seq)
	until(tab, "demo.gone", 0, 2000)
	var deleted []string
	for now := int64(2000); now <= 70_000; now += 1000 {
		deleted = append(deleted, tab.Tick(ms(now), true, 100).Deletes...)
	}
	require.Equal(t, []string{"demo.gone"}, deleted)
	_, ok := tab.State("demo.gone")
	require.False(t, ok)
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Options)
	}{
		{"window too small", func(o *Options) { o.WindowSize = 1 }},
		{"suspect fraction above one", func(o *Options) { o.SuspectFraction = 2 }},
		{"pause margin below one", func(o *Options) { o.PauseMemoryMargin = 0.5 }},
		{"negative pause", func(o *Options) { o.PauseIntervals = -1 }},
		{"negative trust after", func(o *Options) { o.TrustAfter = -time.Second }},
		{"negative confirm death", func(o *Options) { o.ConfirmDeath = -time.Second }},
		{"negative forget after", func(o *Options) { o.ForgetAfter = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.mutate(&o)
			_, err := NewTable(o, time.Now())
			require.Error(t, err)
		})
	}
	for _, o := range []Options{{}, DefaultOptions(), LocalOptions()} {
		_, err := NewTable(o, time.Now())
		require.NoError(t, err)
	}
}

// The zero Options are the defaults: in particular the predictor learns.
func TestZeroOptionsAreTheDefaults(t *testing.T) {
	tab, err := NewTable(Options{}, time.Unix(1_700_000_000, 0))
	require.NoError(t, err)
	want := DefaultOptions()
	want.Seed = 0
	require.Equal(t, want, tab.Options())
	var seq uint64
	beat(tab, "demo", "i1", 0, 3000, 100, &seq)
	got := until(tab, "demo.i1", 0, 10_000) // dead, then confirmed 5 s later
	require.Contains(t, got, membership.Dead)
	require.EqualValues(t, want.PredictionHorizon, tab.Stats().Positives, "the death was learned from")

	frozen := testTable(t, func(o *Options) { o.NoLearn = true })
	seq = 0
	beat(frozen, "demo", "i1", 0, 3000, 100, &seq)
	until(frozen, "demo.i1", 0, 10_000)
	require.Zero(t, frozen.Stats().Positives, "NoLearn: nothing learned")
}

func TestModelIsACopy(t *testing.T) {
	learner := testTable(t)
	var seq uint64
	beat(learner, "demo", "i1", 0, 3000, 100, &seq)
	until(learner, "demo.i1", 0, 10_000)
	learned := learner.Stats()
	require.Positive(t, learned.Positives)

	scorer := testTable(t, func(o *Options) { o.NoLearn = true })
	require.Error(t, scorer.SetModel(Model{}))
	require.NoError(t, scorer.SetModel(learner.Model()))
	got := scorer.Stats()
	require.Equal(t, learned.Positives, got.Positives)
	require.Equal(t, learned.Weights, got.Weights)

	seq = 0
	beat(learner, "demo", "i2", 10_000, 13_000, 100, &seq)
	until(learner, "demo.i2", 10_000, 20_000)
	require.Greater(t, learner.Stats().Positives, learned.Positives)
	require.Equal(t, learned.Positives, scorer.Stats().Positives, "the scorer's copy did not move")
}

// A dead member's record is refreshed, less often than an alive one's, so
// a lost write of it heals instead of MEMBERS showing the instance alive
// until forgotten.
func TestDeadRecordIsRefreshed(t *testing.T) {
	tab := testTable(t) // refresh every 10 s
	var seq uint64
	beat(tab, "demo", "i1", 0, 1000, 100, &seq)
	got := until(tab, "demo.i1", 0, 3000)
	require.Contains(t, got, membership.Dead)
	refreshes := 0
	for now := int64(3010); now <= 300_000; now += 10 {
		res := tab.Tick(ms(now), true, 1000)
		require.Empty(t, res.Transitions)
		for _, w := range res.Writes {
			require.Equal(t, membership.Dead, w.State)
			refreshes++
		}
	}
	if refreshes < 3 || refreshes > 7 {
		t.Errorf("dead record rewritten %d times in 297 s, want about one per 60 s (six 10 s refreshes)", refreshes)
	}
}

func TestGoneIsDeadOnlyForALateMicroService(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "svc", 0, 1000, 100, &seq)
	seq = 0
	beat(tab, "demo", "plain", 0, 1000, 100, &seq)
	tab.ObserveRTT("demo.svc", time.Millisecond) // a micro service: it answers probes
	tab.Tick(ms(1000), true, 0)                  // the joins

	tab.Gone("demo.svc", ms(1050)) // not late yet: a heartbeat is due
	st, _ := tab.State("demo.svc")
	require.Equal(t, membership.Alive, st, "no responders before it is late")
	require.Equal(t, []string{"demo.svc"}, tab.LateTargets(ms(1200)), "late after two intervals")
	require.Empty(t, tab.LateTargets(ms(1250)), "probed once per two intervals")
	tab.Gone("demo.svc", ms(1210))
	tab.Gone("demo.plain", ms(1210))
	res := tab.Tick(ms(1220), true, 0)
	require.Len(t, res.Transitions, 1, "%+v", res.Transitions)
	require.Equal(t, "svc", res.Transitions[0].Instance)
	require.Equal(t, membership.Dead, res.Transitions[0].State)
	st, _ = tab.State("demo.plain")
	require.Equal(t, membership.Alive, st, "never answered a probe: not a micro service")
}

// A member that stalls is allowed the longest silence any member of the
// fleet recovered from; a member with a long clean record keeps its own
// tolerance.
func TestStallersGetTheFleetsPauseMemory(t *testing.T) {
	tab := testTable(t) // trusted after 30 s
	var a, b, c uint64
	beat(tab, "demo", "a", 0, 40_000, 100, &a)
	// b stalls 2.5 s once, then beats on; a stays clean.
	beat(tab, "demo", "b", 0, 20_000, 100, &b)
	beat(tab, "demo", "b", 22_500, 40_000, 100, &b)
	beat(tab, "demo", "c", 0, 40_000, 100, &c)
	tab.Tick(ms(40_000), true, 1<<20)
	// c stalls 1 s, short of the 2 s stall b came back from: c is now a
	// staller and survives 2.5 s of silence; a, clean, does not.
	got := map[string]membership.State{}
	for now := int64(40_010); now <= 43_500; now += 10 {
		if now == 41_000 {
			beat(tab, "demo", "c", 41_000, 41_000, 100, &c)
		}
		for _, tr := range tab.Tick(ms(now), true, 0).Transitions {
			got[tr.Instance] = tr.State
		}
	}
	require.Equal(t, membership.Dead, got["a"], "clean member silent 3.5 s")
	require.NotEqual(t, membership.Dead, got["c"], "stalling member silent 2.5 s, within 1.1 x the fleet's 2.5 s")
}
