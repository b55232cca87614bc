package detector

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/services/detector/accrual"
)

func TestLoopStartsWithinAPeriodRunsEachPeriodAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := newService(Options{Options: accrual.Options{Seed: 3}})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int64
		done := make(chan struct{})
		go func() {
			s.loop(ctx, 100*time.Millisecond, func() { calls.Add(1) })
			close(done)
		}()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		require.EqualValues(t, 1, calls.Load(), "first call within one period (random delay)")
		time.Sleep(time.Second)
		synctest.Wait()
		require.EqualValues(t, 11, calls.Load(), "then one call per period")
		cancel()
		cancel() // stopping twice is fine
		<-done
		time.Sleep(time.Second)
		require.EqualValues(t, 11, calls.Load(), "no calls after stop")
	})
}
