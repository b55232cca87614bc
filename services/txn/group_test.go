package txn

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGroupCommit runs counters from many goroutines on one store: some
// keys private to a goroutine, some shared by all, so rounds merge
// disjoint commits and hold back overlapping ones. Every increment that was
// acknowledged must be counted exactly once.
func TestGroupCommit(t *testing.T) {
	e := newEnv(t, 3)
	ctx := testCtx(t, 60*time.Second)
	const workers, each, hot = 12, 15, 3
	var mu sync.Mutex
	acked := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key := fmt.Sprintf("group.own.%d", w)
				if i%3 == 0 {
					key = fmt.Sprintf("group.hot.%d", i%hot)
				}
				err := Run(ctx, e.store, func(tx *Tx) error {
					v, err := tx.Get(key)
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(v.Value))
					return tx.Put(key, []byte(strconv.Itoa(n+1)))
				}, WithMaxAttempts(200))
				if err != nil {
					t.Errorf("increment %s: %v", key, err)
					return
				}
				mu.Lock()
				acked[key]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for key, want := range acked {
		got, err := e.store.Get(ctx, key)
		require.NoError(t, err)
		if string(got.Value) != strconv.Itoa(want) {
			t.Errorf("%s = %s, want %d acknowledged increments", key, got.Value, want)
		}
	}
	rounds, members := e.store.group.rounds.Load(), e.store.group.members.Load()
	t.Logf("%d commits in %d rounds", members, rounds)
	require.Less(t, rounds, members, "some rounds carried several commits")
}
