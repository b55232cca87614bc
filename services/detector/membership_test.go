package detector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/service"
)

const ms = int64(time.Millisecond)

func testTable(t *testing.T, mutate ...func(*Options)) *table {
	t.Helper()
	o := DefaultOptions()
	o.Seed = 1
	for _, m := range mutate {
		m(&o)
	}
	o.fill()
	require.NoError(t, o.validate())
	return newTable(o, time.Unix(1_700_000_000, 0))
}

// beat sends heartbeats for key from..to (ms) every interval, with seq
// continuing from *seq.
func beat(tab *table, svc, inst string, from, to, every int64, seq *uint64) {
	for at := from; at <= to; at += every {
		*seq++
		tab.heartbeat(svc, inst, service.Load{Seq: *seq, IntervalMS: every}, at*ms)
	}
}

// until ticks every 10 ms from (ms) to to (ms) and returns the time each
// state was first published for key.
func until(tab *table, key string, from, to int64) map[State]int64 {
	first := map[State]int64{}
	for now := from; now <= to; now += 10 {
		for _, tr := range tab.tick(now*ms, true, 1000).transitions {
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
	require.Contains(t, got, Alive)
	require.NotContains(t, got, Suspect, "regular heartbeats are never suspect")

	got = until(tab, "demo.i1", 5010, 7000) // silence from 5000
	require.Contains(t, got, Suspect)
	require.Contains(t, got, Dead)
	require.Less(t, got[Suspect], got[Dead])
	silent := got[Dead] - 5000
	require.GreaterOrEqual(t, silent, int64(600), "dead after %d ms of silence: too quick for 100 ms heartbeats", silent)
	require.LessOrEqual(t, silent, int64(900), "dead after %d ms of silence: the 1 s target needs less", silent)

	beat(tab, "demo", "i1", 7000, 7000, 100, &seq)
	got = until(tab, "demo.i1", 7000, 7100)
	require.Contains(t, got, Alive, "a heartbeat after death revives")
}

func TestLeavingIsLeftNeverDead(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "i1", 0, 1000, 100, &seq)
	seq++
	tab.heartbeat("demo", "i1", service.Load{Seq: seq, Leaving: true}, 1100*ms)
	got := until(tab, "demo.i1", 0, 60_000)
	require.Contains(t, got, Left)
	require.NotContains(t, got, Dead)
	require.NotContains(t, got, Suspect)
	st, _ := tab.stateOf("demo.i1")
	require.Equal(t, Left, st)
}

func TestEmptyHeartbeatsUseMeasuredInterval(t *testing.T) {
	tab := testTable(t)
	// nats pub hb.demo.i1 '{}' --count 20 --sleep 100ms
	for i := range int64(20) {
		tab.heartbeat("demo", "i1", service.Load{}, i*100*ms)
	}
	got := until(tab, "demo.i1", 0, 4000)
	require.Contains(t, got, Suspect)
	require.Contains(t, got, Dead)
	require.Less(t, got[Dead]-1900, int64(1000), "dead %d ms after the last heartbeat", got[Dead]-1900)
}

func TestLearnedPauseIsToleratedNextTime(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "gc", 0, 3000, 100, &seq)
	// A 1.2 s stall: longer than a first pause is allowed, so it is
	// declared dead; the sequence continues, so it was a stall.
	got := until(tab, "demo.gc", 0, 4200)
	require.Contains(t, got, Dead)
	beat(tab, "demo", "gc", 4200, 8000, 100, &seq)
	until(tab, "demo.gc", 4200, 8000)
	// The same stall again is now expected.
	got = until(tab, "demo.gc", 8010, 9200)
	require.NotContains(t, got, Dead, "a stall the instance recovered from before is tolerated")
	beat(tab, "demo", "gc", 9200, 9200, 100, &seq)
}

func TestRestartAndReorder(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "i1", 0, 2000, 100, &seq)
	// A late duplicate of an old heartbeat is ignored.
	tab.heartbeat("demo", "i1", service.Load{Seq: 5, IntervalMS: 100}, 2050*ms)
	require.EqualValues(t, 1, tab.reordered)
	// A restart: the sequence starts again.
	tab.heartbeat("demo", "i1", service.Load{Seq: 1, IntervalMS: 100}, 2100*ms)
	require.EqualValues(t, 1, tab.restarts)
	st, _ := tab.stateOf("demo.i1")
	require.Equal(t, Alive, st)
}

func TestStandbyPublishesNothingThenTheDifference(t *testing.T) {
	tab := testTable(t)
	var seq uint64
	beat(tab, "demo", "a", 0, 1000, 100, &seq)
	seq = 0
	beat(tab, "demo", "b", 0, 3000, 100, &seq)
	// What the active detector published, as followed through MEMBERS.
	tab.adopt(Member{Service: "demo", Instance: "a", State: Alive}, 1000*ms, false)
	tab.adopt(Member{Service: "demo", Instance: "b", State: Alive}, 1000*ms, false)
	for now := int64(0); now <= 3000; now += 10 {
		res := tab.tick(now*ms, false, 1000)
		require.Empty(t, res.transitions)
		require.Empty(t, res.writes)
	}
	res := tab.tick(3010*ms, true, 0) // taking over
	require.Len(t, res.transitions, 1, "only a changed: %+v", res.transitions)
	require.Equal(t, "a", res.transitions[0].Instance)
	require.Equal(t, Dead, res.transitions[0].State)
	require.Equal(t, Alive, res.transitions[0].Previous)
}

func TestAdoptedSilentMemberIsDeclaredDead(t *testing.T) {
	tab := testTable(t)
	tab.adopt(Member{Service: "old", Instance: "x", State: Alive}, 0, true)
	got := until(tab, "old.x", 0, 20_000)
	require.Contains(t, got, Dead, "an instance recorded alive that never heartbeats again dies")
	require.NotContains(t, got, Alive, "adoption is not a transition")
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
				tab.heartbeat("svc", "i"+itoa(i), service.Load{Seq: seqs[i], IntervalMS: 1000}, (now+int64(i))*ms)
			}
		}
		res := tab.tick(now*ms, true, 200)
		writes += len(res.writes)
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
		deleted = append(deleted, tab.tick(now*ms, true, 100).deletes...)
	}
	require.Equal(t, []string{"demo.gone"}, deleted)
	_, ok := tab.stateOf("demo.gone")
	require.False(t, ok)
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Options)
	}{
		{"window too small", func(o *Options) { o.WindowSize = 1 }},
		{"suspect fraction above one", func(o *Options) { o.SuspectFraction = 2 }},
		{"lease ttl below renew", func(o *Options) { o.LeaseTTL = 100 * time.Millisecond }},
		{"pause margin below one", func(o *Options) { o.PauseMemoryMargin = 0.5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.mutate(&o)
			require.Error(t, o.validate())
		})
	}
	for _, o := range []Options{DefaultOptions(), LocalOptions()} {
		require.NoError(t, o.validate())
	}
	_, err := New(DefaultOptions())
	require.Error(t, err, "New needs a connection")
}
