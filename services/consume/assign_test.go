package consume

import (
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m%d", i)
	}
	return out
}

// counts returns how many partitions each member owns.
func counts(owners []string) map[string]int {
	c := map[string]int{}
	for _, o := range owners {
		c[o]++
	}
	return c
}

func checkBalanced(t *testing.T, p int, ms []string, owners []string) {
	t.Helper()
	if len(owners) != p {
		t.Fatalf("got %d owners, want %d", len(owners), p)
	}
	c := counts(owners)
	lo, hi := p/len(ms), (p+len(ms)-1)/len(ms)
	for _, m := range ms {
		if c[m] < lo || c[m] > hi {
			t.Errorf("member %s owns %d partitions, want %d..%d (owners %v)", m, c[m], lo, hi, owners)
		}
	}
	for _, o := range owners {
		if !slices.Contains(ms, o) {
			t.Errorf("partition owned by %q, not a member", o)
		}
	}
}

func TestAssignBalanced(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p, n    int
		prevOf  int // members of the previous assignment (0: none)
		wantMax int // most partitions that may move from the previous one
	}{
		{name: "fresh 16 over 3", p: 16, n: 3},
		{name: "fresh 16 over 16", p: 16, n: 16},
		{name: "fresh 16 over 20", p: 16, n: 20},
		{name: "fresh 7 over 2", p: 7, n: 2},
		{name: "5th joins 4", p: 16, n: 5, prevOf: 4, wantMax: 16/5 + 2},
		{name: "4th leaves", p: 16, n: 3, prevOf: 4, wantMax: 4},
		{name: "2nd joins 1", p: 16, n: 2, prevOf: 1, wantMax: 8},
		{name: "64 partitions, 9th joins 8", p: 64, n: 9, prevOf: 8, wantMax: 64/9 + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prev []string
			if tc.prevOf > 0 {
				prev = Assign(tc.p, members(tc.prevOf), nil)
			}
			got := Assign(tc.p, members(tc.n), prev)
			if tc.n <= tc.p {
				checkBalanced(t, tc.p, members(tc.n), got)
			} else if c := counts(got); len(c) != tc.p {
				t.Errorf("%d members over %d partitions: %d distinct owners, want %d", tc.n, tc.p, len(c), tc.p)
			}
			if prev != nil {
				if mv := Moved(prev, got); mv > tc.wantMax {
					t.Errorf("moved %d partitions, want at most %d\nprev %v\ngot  %v", mv, tc.wantMax, prev, got)
				}
			}
		})
	}
}

func TestAssignSticky(t *testing.T) {
	const p = 16
	prev := Assign(p, members(4), nil)
	got := Assign(p, members(5), prev)
	limit := (p+4)/5 + 1 // ceil(P/5)+1
	if mv := Moved(prev, got); mv > limit {
		t.Fatalf("a 5th member joining 4 moved %d partitions, want at most %d", mv, limit)
	}
	// Every moved partition went to the newcomer: nobody else traded.
	for i := range got {
		if got[i] != prev[i] && got[i] != "m4" {
			t.Errorf("partition %d moved %s -> %s, want only moves to the new member", i, prev[i], got[i])
		}
	}
	// The same members again: nothing moves.
	if mv := Moved(got, Assign(p, members(5), got)); mv != 0 {
		t.Errorf("recomputing with the same members moved %d partitions", mv)
	}
	// A member leaves: only its partitions move.
	left := slices.DeleteFunc(members(5), func(m string) bool { return m == "m2" })
	after := Assign(p, left, got)
	for i := range after {
		if got[i] != "m2" && after[i] != got[i] {
			t.Errorf("partition %d of a live member moved %s -> %s", i, got[i], after[i])
		}
	}
	checkBalanced(t, p, left, after)
}

func TestAssignDeterministic(t *testing.T) {
	prev := Assign(16, []string{"b", "a", "c"}, nil)
	for range 20 {
		got := Assign(16, []string{"c", "a", "b", "d"}, prev)
		want := Assign(16, []string{"d", "b", "c", "a", "a"}, prev)
		if !slices.Equal(got, want) {
			t.Fatalf("same input in another order gave another assignment:\n%v\n%v", got, want)
		}
	}
	if got := Assign(4, nil, []string{"a", "a", "b", "b"}); !slices.Equal(got, []string{"", "", "", ""}) {
		t.Errorf("no members: got %v, want every partition orphaned", got)
	}
}

func TestPartitionStable(t *testing.T) {
	// The hash is part of the wire contract: positions stored under one
	// partition count must map the same keys after a restart.
	for _, tc := range []struct {
		key  string
		n    int
		want int
	}{
		{"orders", 16, 12},
		{"acct.alice", 16, 12},
		{"", 16, 5},
		{"orders", 1, 0},
	} {
		if got := Partition(tc.key, tc.n); got != tc.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
	seen := map[int]bool{}
	for i := range 200 {
		seen[Partition(fmt.Sprintf("t%d", i), 16)] = true
	}
	if len(seen) != 16 {
		t.Errorf("200 keys hit %d of 16 partitions", len(seen))
	}
}

func TestStartSeqIsLowestPosition(t *testing.T) {
	// A partition that applied nothing (position 0) must pull the reader
	// back to the stream's start whatever the map's order.
	for range 50 {
		m := &Member{owned: map[int]*owned{
			0: {next: cursor{seq: 900}}, 1: {next: cursor{seq: 0}}, 2: {next: cursor{seq: 40, index: 3}}, 3: {next: cursor{seq: 700}},
		}}
		if got := m.startSeq(); got != 1 {
			t.Fatalf("start %d, want 1", got)
		}
	}
	m := &Member{owned: map[int]*owned{0: {next: cursor{seq: 900}}, 2: {next: cursor{seq: 40, index: 3}}}}
	if got := m.startSeq(); got != 40 {
		t.Errorf("start %d, want 40", got)
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   replicator.Event
		want string
	}{
		{name: "topic", ev: replicator.Event{Subject: "events.orders.eu"}, want: "orders.eu"},
		{name: "header", ev: replicator.Event{Subject: "events.orders.eu", Header: nats.Header{streams.KeyHeader: {"acct-7"}}}, want: "acct-7"},
		{name: "empty header", ev: replicator.Event{Subject: "events.orders", Header: nats.Header{streams.KeyHeader: {""}}}, want: "orders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Key(tc.ev); got != tc.want {
				t.Errorf("Key = %q, want %q", got, tc.want)
			}
		})
	}
}
