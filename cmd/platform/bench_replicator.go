package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/replicator/replicatorbench"
)

func newBenchPublishCmd(f *benchFlags) *cobra.Command {
	var (
		o        replicatorbench.Options
		envelope bool
	)
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publisher at quorum vs raw nats.go async publishing",
		Long: `Publish --events events of --size bytes with the replicator's Publisher at
quorum, and the same with raw nats.go JetStream async publishing with the same
in-flight window, one after the other on the same cluster. --envelope packs
events into envelopes (compared in events/s).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = f.progressOut()
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				return replicatorbench.Publish(ctx, t, envelope, o)
			})
		},
	}
	cmd.Flags().IntVar(&o.Events, "events", 100_000, "events to publish (each side)")
	cmd.Flags().IntVar(&o.Size, "size", 128, "event size in bytes")
	cmd.Flags().IntVar(&o.InFlight, "in-flight", replicator.DefaultMaxInFlight, "acknowledgements in flight (both sides; envelope mode keeps its own shallow pipeline)")
	cmd.Flags().BoolVar(&envelope, "envelope", false, "pack events into envelopes")
	return cmd
}

func newBenchIngestCmd(f *benchFlags) *cobra.Command {
	var (
		o     replicatorbench.Options
		so    replicator.Options
		fire  bool
		flood bool
	)
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Request clients through ingest.* at quorum vs synchronous JetStream publishing",
		Long: `Run --clients clients that each send --events events one after another: first
publishing synchronously straight to JetStream, then as requests to ingest.bench
answered at quorum by an ingest service instance started in this process.

With --fire-and-forget, publish --events events (default 2,000,000) to
ingest.bench.fire.* at full speed from one connection, wait until the ingest
service is idle, and account for every event: sent, stored (read back from
EVENTS), dropped by reason, unaccounted (must be 0), and the stored events/s
next to the envelope Publisher's events/s measured in the same run.

With --flood, run --clients clients (default 4) that each send --events
requests (default 50) at --consistency, first on an idle platform, then while
one connection publishes --flood-events fire-and-forget events of
--flood-size bytes at full speed; print both rows and the flood's P99 over the
idle P99. A request unanswered within --timeout counts as that long.

No other replicator instance may serve ingest.* on the cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = f.progressOut()
			if fire && !cmd.Flags().Changed("events") {
				o.Events = 2_000_000
			}
			if flood && !cmd.Flags().Changed("events") {
				o.Events = 50
			}
			if flood && !cmd.Flags().Changed("clients") {
				o.Clients = 4
			}
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				if flood {
					return replicatorbench.Flood(ctx, t, o, so)
				}
				if fire {
					return replicatorbench.FireAndForget(ctx, t, o, so)
				}
				return replicatorbench.Ingest(ctx, t, o, so)
			})
		},
	}
	cmd.Flags().BoolVar(&fire, "fire-and-forget", false, "publish --events fire-and-forget events at full speed and account for each")
	cmd.Flags().BoolVar(&flood, "flood", false, "measure requests during a fire-and-forget flood against the same requests on an idle platform")
	cmd.Flags().IntVar(&o.FloodEvents, "flood-events", 3_000_000, "with --flood: fire-and-forget events in the flood")
	cmd.Flags().IntVar(&o.FloodSize, "flood-size", 128, "with --flood: size of each flood event in bytes")
	cmd.Flags().StringVar(&o.Consistency, "consistency", "all", "with --flood: Platform-Consistency of the requests")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Second, "with --flood: how long a request waits for its answer")
	cmd.Flags().IntVar(&o.Clients, "clients", 100, "concurrent request clients")
	cmd.Flags().IntVar(&o.Conns, "conns", 0, "NATS connections the clients share (default: one per client)")
	cmd.Flags().IntVar(&o.Events, "events", 1000, "events per client (with --fire-and-forget: events in all, default 2,000,000)")
	cmd.Flags().IntVar(&o.Size, "size", 128, "event size in bytes")
	cmd.Flags().BoolVar(&so.PerEvent, "per-event", false, "store one stream message per event instead of envelopes")
	cmd.Flags().IntVar(&so.MaxInFlight, "in-flight", 0, "the ingest service's publish pipeline depth (default: the Publisher's)")
	cmd.Flags().IntVar(&so.BatchesInFlight, "batches-in-flight", 0, "batches the ingest service may have in flight (default 1 with envelopes, no cap per event; -1: no cap)")
	cmd.Flags().DurationVar(&so.Linger, "linger", 0, "how long the ingest service lets a batch wait for more events")
	return cmd
}

func newBenchCompressCmd(f *benchFlags) *cobra.Command {
	var events, size, per int
	cmd := &cobra.Command{
		Use:   "compress",
		Short: "Compression ratio and speed per codec, single events vs envelopes",
		Long: `Compress a generated corpus of realistic JSON events with s2, zstd and gzip,
one event at a time and as envelopes. Runs in this process; no cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			results, err := replicatorbench.Compress(events, size, per, f.progressOut())
			if perr := f.print(cmd, results...); perr != nil {
				return perr
			}
			return err
		},
	}
	cmd.Flags().IntVar(&events, "events", 100_000, "events in the corpus")
	cmd.Flags().IntVar(&size, "size", 128, "event size in bytes")
	cmd.Flags().IntVar(&per, "per-envelope", 1000, "events per envelope")
	return cmd
}
