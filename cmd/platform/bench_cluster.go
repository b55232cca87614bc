package main

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/cluster/clusterbench"
)

func newBenchElectionCmd(f *benchFlags) *cobra.Command {
	var o clusterbench.ElectionOptions
	var kill bool
	cmd := &cobra.Command{
		Use:   "election",
		Short: "Stream leader step-down and leader node stop, as a publishing client sees them",
		Long: `On an R3 stream with a client publishing one message at a time:

  stepdown new leader      step-down request -> another node leads
  stepdown publish stall   the client's longest gap between acknowledgements
  node stop new leader     the leader's node shuts down -> another node leads
  node stop first publish  -> the client's first acknowledged publish

The node-stop rows need the embedded cluster (not --server); the node is
shut down in-process (a clean shutdown, in which a leader may hand over),
then restarted and caught up before the next round. With --kill the cluster
is instead --nodes processes of this binary (platform run --config, fsync
always) and the leader's process is killed with SIGKILL, a crash: rows
"node kill new leader" and "node kill first publish". Before each stop the
leader is moved off the node the client uses, so the rows measure the
election, not a client's reconnection. Latency columns are the figures'
P50/P95/P99.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = f.progressOut()
			run := func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				return clusterbench.Election(ctx, t, o)
			}
			if !kill {
				return f.run(cmd, run)
			}
			if f.server != "" {
				return errors.New("--kill starts a cluster of its own processes; it takes no --server")
			}
			pc, err := startProcCluster(cmd.Context(), f.nodes)
			if err != nil {
				return err
			}
			defer pc.Close()
			o.Faults = pc
			pf := *f
			pf.server = pc.URL()
			return pf.run(cmd, run)
		},
	}
	cmd.Flags().IntVar(&o.Rounds, "rounds", 10, "step-downs to measure")
	cmd.Flags().IntVar(&o.StopRounds, "stop-rounds", 3, "leader node stops to measure (-1: none)")
	cmd.Flags().BoolVar(&kill, "kill", false, "run the cluster as processes and kill the leader's with SIGKILL")
	return cmd
}

func newBenchReplicationCmd(f *benchFlags) *cobra.Command {
	var o clusterbench.ReplicationOptions
	cmd := &cobra.Command{
		Use:   "replication",
		Short: "Publish latency and throughput for R1, R3 and R5 at fsync always and 1s",
		Long: `For each replica count, one client publishes --messages messages one at a
time (P50/P95/P99 of the acknowledgement) and then pipelines publishes with
--in-flight unacknowledged for --duration (pipelined_per_s). Without --server
this runs on two embedded clusters of max(5, replicas) nodes side by side:
one that fsyncs before every acknowledgement and one that fsyncs every
second.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = f.progressOut()
			if f.server != "" {
				return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
					return clusterbench.Replication(ctx, t, "server", o)
				})
			}
			nodes := max(5, slices.Max(append([]int{0}, o.Replicas...)))
			var rows []bench.Result
			for _, s := range []struct {
				label    string
				always   bool
				interval time.Duration
			}{{"always", true, 0}, {"1s", false, time.Second}} {
				t, err := target.Open(cmd.Context(), target.Options{Nodes: nodes, SyncAlways: s.always, SyncInterval: s.interval})
				if err != nil {
					return err
				}
				r, err := clusterbench.Replication(cmd.Context(), t, s.label, o)
				t.Close()
				rows = append(rows, r...)
				if err != nil {
					_ = f.print(cmd, rows...)
					return err
				}
			}
			return f.print(cmd, rows...)
		},
	}
	fl := cmd.Flags()
	fl.IntSliceVar(&o.Replicas, "r", []int{1, 3, 5}, "replica counts")
	fl.IntVar(&o.Messages, "messages", 2000, "one-at-a-time publishes per replica count")
	fl.DurationVar(&o.Duration, "duration", 3*time.Second, "pipelined run per replica count")
	fl.IntVar(&o.InFlight, "in-flight", 256, "pipelined unacknowledged publishes")
	fl.IntVar(&o.Size, "size", 128, "payload bytes")
	return cmd
}
