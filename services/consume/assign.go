package consume

import (
	"cmp"
	"slices"
)

// Assign returns the owner of each of p partitions among members, given
// the previous owners (prev[i] owns partition i; "" or a member no longer
// listed leaves it orphaned). The result is balanced (each member owns
// p/len(members) or one more) and sticky: a partition stays with its
// previous owner while that owner is live and within its quota, so a
// member joining or leaving moves about p/len(members) partitions, the
// cooperative sticky strategy of Kafka's KIP-429 without its two rounds
// (ownership is fenced by epochs instead, see Member). It is a pure
// function of its arguments: every leader computes the same answer.
// With no members every partition is orphaned ("").
func Assign(p int, members []string, prev []string) []string {
	out := make([]string, p)
	if len(members) == 0 || p <= 0 {
		return out
	}
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	live := make(map[string][]int, len(ms))
	for _, m := range ms {
		live[m] = nil
	}
	var orphans []int
	for i := range p {
		var o string
		if i < len(prev) {
			o = prev[i]
		}
		if _, ok := live[o]; ok && o != "" {
			live[o] = append(live[o], i)
		} else {
			orphans = append(orphans, i)
		}
	}
	// Quotas: the extra partitions (p mod n) go to the members that hold
	// the most already, so they need not give any up; ties by name.
	order := slices.Clone(ms)
	slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(len(live[b]), len(live[a])) })
	base, extra := p/len(ms), p%len(ms)
	quota := make(map[string]int, len(ms))
	for i, m := range order {
		quota[m] = base
		if i < extra {
			quota[m]++
		}
	}
	// Members over quota give up their highest partitions.
	for _, m := range ms {
		if n := len(live[m]) - quota[m]; n > 0 {
			held := live[m]
			orphans = append(orphans, held[len(held)-n:]...)
			live[m] = held[:len(held)-n]
		}
	}
	slices.Sort(orphans)
	// Orphans go, lowest first, to the member furthest below its quota
	// (ties by name).
	for _, part := range orphans {
		best := ""
		for _, m := range ms {
			if len(live[m]) >= quota[m] {
				continue
			}
			if best == "" || quota[m]-len(live[m]) > quota[best]-len(live[best]) {
				best = m
			}
		}
		live[best] = append(live[best], part)
	}
	for m, parts := range live {
		for _, part := range parts {
			out[part] = m
		}
	}
	return out
}

// Moved counts the partitions whose owner differs between a and b.
func Moved(a, b []string) int {
	n := 0
	for i := range max(len(a), len(b)) {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			n++
		}
	}
	return n
}
