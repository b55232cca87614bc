package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
)

// benchFlags are the flags every `platform bench` subcommand shares.
type benchFlags struct {
	server   string
	json     bool
	nodes    int
	sync     bool
	replicas int
	quiet    bool
}

func newBenchCmd() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency percentiles",
		Long: `Benchmarks run against an embedded 3-node cluster started on free loopback
ports with temporary storage, or against any cluster given with --server.
Each prints events/s and P50/P95/P99 latency, side by side with its baseline;
--json prints one JSON object per result line.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", "", "NATS URL(s) of a cluster to run against (default: start an embedded one)")
	pf.BoolVar(&f.json, "json", false, "print results as JSON objects, one per line")
	pf.IntVar(&f.nodes, "nodes", 3, "nodes of the embedded cluster")
	pf.BoolVar(&f.sync, "sync-always", true, "embedded cluster fsyncs every write (the platform default)")
	pf.IntVar(&f.replicas, "replicas", 3, "stream replicas when --server is given")
	pf.BoolVar(&f.quiet, "quiet", false, "no progress bar")
	cmd.AddCommand(
		newBenchPublishCmd(f),
		newBenchIngestCmd(f),
		newBenchCompressCmd(f),
		newBenchTxnCmd(f),
		newBenchDetectorCmd(f),
		newBenchDetectorRecordCmd(f),
		newBenchDetectorInstancesCmd(f),
		newBenchDetectorScaleCmd(f),
		newBenchDetectorSendersCmd(f),
		newBenchBalancerCmd(f),
		newBenchAlertingCmd(f),
		newBenchBackupCmd(f),
		newBenchElectionCmd(f),
		newBenchReplicationCmd(f),
		newBenchConsumeCmd(f),
		newBenchConsumeMemberCmd(),
		newBenchConsoleCmd(),
	)
	return cmd
}

// open returns the benchmark's target cluster.
func (f *benchFlags) open(ctx context.Context) (*target.Target, error) {
	return target.Open(ctx, target.Options{
		Server: f.server, Nodes: f.nodes, SyncAlways: f.sync, Replicas: f.replicas,
	})
}

// progressOut is where progress bars go: stderr unless --quiet.
func (f *benchFlags) progressOut() io.Writer {
	if f.quiet {
		return nil
	}
	return os.Stderr
}

// run opens the target cluster, runs the benchmark on it and prints what
// it measured, even when it stopped with an error part way.
func (f *benchFlags) run(cmd *cobra.Command, bench func(ctx context.Context, t *target.Target) ([]bench.Result, error)) error {
	t, err := f.open(cmd.Context())
	if err != nil {
		return err
	}
	defer t.Close()
	fmt.Fprintf(cmd.ErrOrStderr(), "every side connects to server %s\n", t.Server())
	results, err := bench(cmd.Context(), t)
	if perr := f.print(cmd, results...); perr != nil {
		return perr
	}
	return err
}

// print writes the results to the command's output.
func (f *benchFlags) print(cmd *cobra.Command, results ...bench.Result) error {
	return bench.Print(cmd.OutOrStdout(), f.json, results...)
}
