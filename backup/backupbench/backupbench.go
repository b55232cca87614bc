// Package backupbench measures backup and restore: full backup MB/s, the
// size of an increment after 1% new data relative to the full backup, and
// restore MB/s into a second cluster.
package backupbench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/backup"
	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/streams"
)

// Options configure the benchmark.
type Options struct {
	// Events is how many events the full backup holds (default 100000).
	Events int
	// Size is each event's payload size in bytes (default 512).
	Size int
	// Growth is the share of new events before the increment (default 0.01).
	Growth float64
	// Progress receives progress bars (nil: none).
	Progress io.Writer
}

func (o *Options) setDefaults() {
	if o.Events <= 0 {
		o.Events = 100000
	}
	if o.Size <= 0 {
		o.Size = 512
	}
	if o.Growth <= 0 {
		o.Growth = 0.01
	}
}

// Run fills EVENTS on t, takes a full backup, adds Growth more events,
// takes an increment, then restores the chain into restoreInto (a second,
// empty cluster). Rows: "backup full", "backup incremental", "restore".
func Run(ctx context.Context, t, restoreInto *target.Target, o Options) ([]bench.Result, error) {
	o.setDefaults()
	dir, err := os.MkdirTemp("", "platform-backup-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := fill(ctx, t.JS, 0, o.Events, o); err != nil {
		return nil, err
	}
	var rows []bench.Result

	start := time.Now()
	full, err := backup.Backup(ctx, t.Conn, dir, backup.Options{Streams: []string{streams.Events}, Progress: o.Progress})
	if err != nil {
		return nil, err
	}
	fe, _ := full.Stream(streams.Events)
	rows = append(rows, row("backup full", start, fe, full.Size()))

	added := max(1, int(float64(o.Events)*o.Growth))
	if err := fill(ctx, t.JS, o.Events, added, o); err != nil {
		return rows, err
	}
	start = time.Now()
	inc, err := backup.Backup(ctx, t.Conn, dir, backup.Options{Incremental: true, Progress: o.Progress})
	if err != nil {
		return rows, err
	}
	ie, _ := inc.Stream(streams.Events)
	r := row("backup incremental", start, ie, inc.Size())
	r.Extra["size_vs_full_pct"] = 100 * float64(inc.Size()) / float64(full.Size())
	r.Extra["new_data_pct"] = 100 * float64(added) / float64(o.Events)
	rows = append(rows, r)

	if restoreInto == nil {
		return rows, nil
	}
	// The restore target has the platform's streams provisioned; replace them.
	start = time.Now()
	res, err := backup.Restore(ctx, restoreInto.Conn, dir, backup.RestoreOptions{Replace: true, Progress: o.Progress})
	if err != nil {
		return rows, err
	}
	rr := bench.Result{Name: "restore", Extra: map[string]float64{}}
	rr.Finish(int64(res.Snapshot+res.Replayed), time.Since(start), nil)
	rr.Extra["MB_per_s"] = float64(fe.Bytes+ie.Bytes) / 1e6 / rr.Seconds
	rows = append(rows, rr)
	return rows, nil
}

func row(name string, start time.Time, s backup.Stream, disk int64) bench.Result {
	r := bench.Result{Name: name, Extra: map[string]float64{}}
	r.Finish(int64(s.Messages), time.Since(start), nil)
	r.Extra["data_MB"] = float64(s.Bytes) / 1e6
	r.Extra["disk_MB"] = float64(disk) / 1e6
	r.Extra["MB_per_s"] = float64(s.Bytes) / 1e6 / r.Seconds
	return r
}

// fill publishes n events of o.Size random-ish JSON-like bytes, pipelined.
func fill(ctx context.Context, js jetstream.JetStream, from, n int, o Options) error {
	bar := bench.NewProgress(o.Progress, "fill EVENTS", int64(n))
	defer bar.Stop()
	rng := rand.New(rand.NewPCG(uint64(from), 7))
	const alphabet = `abcdefghijklmnopqrstuvwxyz0123456789{}":,`
	for i := from; i < from+n; i++ {
		b := make([]byte, o.Size)
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		if _, err := js.PublishAsync(streams.EventSubject(fmt.Sprintf("bench.t%d", i%16)), b); err != nil {
			return err
		}
		bar.Add(1)
		if i%1000 == 999 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
