package txn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
)

// TestBank moves money between 50 accounts from 8 clients while the STATE
// stream's leader is stepped down and a node is stopped and restarted.
// Every transfer also writes a log key unique to the attempt, so at the
// end the bucket itself says which attempts were applied: every
// acknowledged one, no failed one, and the balances are exactly what the
// applied transfers give.
func TestBank(t *testing.T) {
	t.Parallel()
	const (
		accounts = 50
		clients  = 8
		initial  = 1000
	)
	e := newEnv(t, 3)
	ctx := clustertest.Context(t, 90*time.Second)
	acct := func(i int) string { return fmt.Sprintf("bank.acct.%02d", i) }
	for i := range accounts {
		put(t, e.store, acct(i), strconv.Itoa(initial))
	}

	type outcome int
	const (
		failed outcome = iota
		acked
		unknown
	)
	var (
		committed atomic.Int64
		mu        sync.Mutex
		attempts  = map[string]outcome{} // log key → what the client was told
		runErrs   = map[string]int{}
	)
	// Half the clients have a connection and store each; the other half
	// share one store, so their commits are group-committed together.
	shared, err := NewStore(clustertest.Connect(t, e.c), WithLogger(clustertest.Logger()))
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			store := shared
			if c < clients/2 {
				var err error
				store, err = NewStore(clustertest.Connect(t, e.c), WithLogger(clustertest.Logger()))
				if err != nil {
					t.Error(err)
					return
				}
			}
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			n := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				from, to := rng.IntN(accounts), rng.IntN(accounts-1)
				if to >= from {
					to++
				}
				amount := 1 + rng.IntN(50)
				var tried []string
				rctx, cancel := context.WithTimeout(ctx, 45*time.Second)
				err := Run(rctx, store, func(tx *Tx) error {
					got, err := tx.GetAll(acct(from), acct(to))
					if err != nil {
						return err
					}
					a, _ := strconv.Atoi(string(got[acct(from)].Value))
					b, _ := strconv.Atoi(string(got[acct(to)].Value))
					if a < amount {
						return nil // read-only: nothing to log
					}
					n++
					logKey := fmt.Sprintf("bank.log.c%d.%d", c, n)
					tried = append(tried, logKey)
					if err := tx.Put(acct(from), []byte(strconv.Itoa(a-amount))); err != nil {
						return err
					}
					if err := tx.Put(acct(to), []byte(strconv.Itoa(b+amount))); err != nil {
						return err
					}
					return tx.Put(logKey, fmt.Appendf(nil, "%d %d %d", from, to, amount))
				}, WithMaxAttempts(100))
				cancel()
				mu.Lock()
				for i, k := range tried {
					switch {
					case i < len(tried)-1:
						attempts[k] = failed
					case err == nil:
						attempts[k] = acked
					case errors.Is(err, ErrUnknownOutcome):
						attempts[k] = unknown
					default:
						attempts[k] = failed
					}
				}
				if err != nil {
					runErrs[errKind(err)]++
				}
				mu.Unlock()
				if err == nil {
					committed.Add(1)
				}
			}
		}()
	}

	// Chaos, each step once the clients made progress since the last.
	progress := func(n int64) {
		target := committed.Load() + n
		clustertest.Eventually(t, 30*time.Second, func() error {
			if got := committed.Load(); got < target {
				return fmt.Errorf("only %d of %d transfers committed", got, target)
			}
			return nil
		})
	}
	admin := clustertest.Connect(t, e.c)
	progress(150)
	old, leader := clustertest.StepDown(t, e.c, admin, "KV_STATE")
	t.Logf("stepped down: leader %d -> %d", old, leader)
	progress(150)
	e.c.StopNode(leader)
	t.Logf("stopped node %d", leader)
	clustertest.WaitStreamLeader(t, e.c, "KV_STATE", leader)
	progress(150)
	clustertest.RestartNode(t, e.c, leader)
	t.Logf("restarted node %d", leader)
	progress(150)
	close(stop)
	wg.Wait()

	// The bucket's own view, read through the leader once everything settled.
	balances := make([]int, accounts)
	total := 0
	for i := range accounts {
		got, err := e.store.Get(ctx, acct(i))
		require.NoError(t, err)
		balances[i], _ = strconv.Atoi(string(got.Value))
		total += balances[i]
	}
	require.Equal(t, accounts*initial, total, "money was created or destroyed")

	applied := map[string]string{}
	w, err := e.kv.Watch(ctx, "bank.log.>", jetstream.IgnoreDeletes())
	require.NoError(t, err)
	for entry := range w.Updates() {
		if entry == nil {
			break
		}
		applied[entry.Key()] = string(entry.Value())
	}
	require.NoError(t, w.Stop())

	replay := make([]int, accounts)
	for i := range replay {
		replay[i] = initial
	}
	for k, v := range applied {
		var from, to, amount int
		_, err := fmt.Sscanf(v, "%d %d %d", &from, &to, &amount)
		require.NoError(t, err, k)
		replay[from] -= amount
		replay[to] += amount
	}
	require.Equal(t, replay, balances, "balances must be exactly the applied transfers")

	counts := map[outcome]int{}
	unknownApplied := 0
	for k, o := range attempts {
		counts[o]++
		_, ok := applied[k]
		switch o {
		case unknown:
			if ok {
				unknownApplied++
			}
		case acked:
			require.True(t, ok, "acknowledged transfer %s was lost", k)
		case failed:
			require.False(t, ok, "failed transfer %s left writes behind", k)
		}
	}
	t.Logf("transfers: %d acknowledged, %d failed attempts, %d unknown outcome (%d of them applied); run errors %v",
		counts[acked], counts[failed], counts[unknown], unknownApplied, runErrs)
	require.GreaterOrEqual(t, counts[acked], 600)
}

// errKind names an error for the test log.
func errKind(err error) string {
	for _, k := range []error{ErrConflict, ErrUnknownOutcome, ErrUnavailable, context.DeadlineExceeded} {
		if errors.Is(err, k) {
			return strings.TrimPrefix(k.Error(), "txn: ")
		}
	}
	return err.Error()
}
