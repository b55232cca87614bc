package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/platform/platform/backup/backupbench"
	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
)

func newBenchBackupCmd(f *benchFlags) *cobra.Command {
	var o backupbench.Options
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Full backup MB/s, increment size after 1% new data, restore MB/s",
		Long: `Fill EVENTS with --events events of --size bytes, take a full backup, add
--growth more and take an increment (its size relative to the full backup is
size_vs_full_pct), then restore the chain into a second embedded cluster.
With --server the restore row is skipped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = f.progressOut()
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				var into *target.Target
				if f.server == "" {
					var err error
					if into, err = f.open(ctx); err != nil {
						return nil, err
					}
					defer into.Close()
				}
				return backupbench.Run(ctx, t, into, o)
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Events, "events", 100000, "events in the full backup")
	fl.IntVar(&o.Size, "size", 512, "event payload bytes")
	fl.Float64Var(&o.Growth, "growth", 0.01, "share of new events before the increment")
	return cmd
}
