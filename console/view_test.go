package console

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// item is a row of a paged list in these tests: v sorts, k breaks ties.
type item struct {
	v int
	k string
}

var itemSorts = []sortKey[*item]{{"v", func(a, b *item) int { return cmp.Compare(a.v, b.v) }}}

func byItemKey(a, b *item) int { return cmp.Compare(a.k, b.k) }

// TestPageMatchesFullSort checks every page, whether selected with the
// heap or sorted whole, against the same slice of the fully sorted list,
// ties included.
func TestPageMatchesFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 10, 101, 1000, 5000} {
		list := make([]*item, n)
		for i := range list {
			list[i] = &item{v: rng.IntN(max(1, n/20)), k: fmt.Sprintf("k%05d", rng.IntN(1_000_000))}
		}
		for _, desc := range []bool{false, true} {
			q := pageQuery[*item]{by: itemSorts[0], desc: desc}
			want := slices.Clone(list)
			slices.SortFunc(want, q.compare(byItemKey))
			for _, pg := range [][2]int{{0, 1}, {0, 10}, {0, 100}, {5, 20}, {100, 100}, {n / 2, 100}, {n - 1, 100}, {n, 10}, {n + 5, 10}, {0, n + 1}} {
				offset, limit := max(0, pg[0]), max(1, pg[1])
				q.offset, q.limit = offset, limit
				shuffled := slices.Clone(list)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				got := q.page(shuffled, byItemKey)
				lo := min(offset, n)
				w := want[lo:min(lo+limit, n)]
				if !slices.Equal(got, w) {
					t.Fatalf("n %d desc %v offset %d limit %d: got %d items %v, want %d %v", n, desc, offset, limit, len(got), deref(got), len(w), deref(w))
				}
				// The list is reordered, never changed.
				slices.SortFunc(shuffled, q.compare(byItemKey))
				if !slices.Equal(shuffled, want) {
					t.Fatalf("n %d desc %v offset %d limit %d: the list lost or doubled items", n, desc, offset, limit)
				}
			}
		}
	}
}

func deref(list []*item) []item {
	out := make([]item, len(list))
	for i, x := range list {
		out[i] = *x
	}
	return out
}
