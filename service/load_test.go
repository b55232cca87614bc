package service

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLoadCPUIsAShare: a process busy on every core over short intervals
// still reports a CPU share within [0,1], which receivers require.
func TestLoadCPUIsAShare(t *testing.T) {
	tr := newLoadTracker()
	for range 20 {
		var wg sync.WaitGroup
		stop := time.Now().Add(20 * time.Millisecond)
		for range runtime.NumCPU() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for x := 0; time.Now().Before(stop); x++ {
				}
			}()
		}
		wg.Wait()
		l := tr.snapshot(time.Now())
		require.GreaterOrEqual(t, l.CPU, 0.0)
		require.LessOrEqual(t, l.CPU, 1.0)
	}
}
