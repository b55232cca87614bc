package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/consume/consumebench"
)

func newBenchConsumeCmd(f *benchFlags) *cobra.Command {
	var o consumebench.Options
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Consumer groups vs the ordered Reader and a stock pull consumer",
		Long: `Measure consumer groups on one cluster, row by row, every side connected to
the same node, with CPU seconds per million events (getrusage of this
process, plus its member processes once they exit):

  group-4-eos      4 members of a fresh group apply --events events stored in
                   envelopes; each partition commits its position with txn (a
                   handler that does nothing else); from the members' start
  group-4-ack      4 at-least-once members of a fresh group take the same
                   events with Next (500) and acknowledge each one
                   (AckDelivery) until every event was acknowledged once;
                   duplicates counts those handed out again (a rebalance
                   as the group forms), first_s is when the first was
                   handed out, after_first_ev_s the rate from then on
  fanout-4-raw     4 ordered consumers, each on a connection of its own,
                   each read every message of the same events and do nothing
                   with them: the floor of a group whose members each
                   receive every message
  fanout-4-decode  the same, and each also decodes the messages that hold
                   events of its 4 of 16 partitions, as a member's reading
                   does, and nothing more (no group, no settlement)
  reader-ordered   one ordered replicator.Reader reads the same events
  stock-pull-ack   a durable pull consumer (batches of 500, 10,000 acks
                   pending) acks each of --events per-event messages
  eos-counters-4   4 members add each of --eos-events values to its topic's
                   counter in STATE; the counters are checked exact
  kill-1-of-4      4 member processes heartbeating to a detector run here;
                   --rounds times one is killed with SIGKILL: time until
                   every partition it owned is consumed again by another
                   (P50, P99), against the time until the detector declared
                   it dead + 1 s (--ttl is the membership's backstop)
  join-5th         a 5th member process joins: partitions that change owner

--rows picks rows by name (group-4-ack,reader-ordered,...); --cpuprofile
writes this process's CPU profile from the moment the events are stored (the
embedded servers and the in-process members of the group rows included).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = f.progressOut()
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			o.Member = func(spec consumebench.MemberSpec) *exec.Cmd {
				b, _ := json.Marshal(spec)
				c := exec.Command(bin, "bench", "consume-member", string(b))
				c.Stderr = os.Stderr
				return c
			}
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer pf.Close()
				// The profile starts once the events are stored, so it
				// shows the reading rows, not the publishing.
				o.Published = func() {
					if err := pprof.StartCPUProfile(pf); err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "cpu profile:", err)
					}
				}
				defer pprof.StopCPUProfile()
			}
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				return consumebench.New(t, o).All(ctx)
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Events, "events", 1_000_000, "events of the throughput rows")
	fl.IntVar(&o.EOSEvents, "eos-events", 200_000, "events of the exactly-once counter row")
	fl.IntVar(&o.Rounds, "rounds", 10, "members killed, one per round")
	fl.StringSliceVar(&o.Rows, "rows", nil, "rows to run, by name (default all)")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process to the file")
	fl.DurationVar(&o.TTL, "ttl", 0, "member TTL of the kill and join rows (default the library's, 5s)")
	return cmd
}

// newBenchConsumeMemberCmd runs one member process of `bench consume`.
func newBenchConsumeMemberCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "consume-member SPEC",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var spec consumebench.MemberSpec
			if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
				return fmt.Errorf("member spec: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			return consumebench.RunMember(ctx, spec)
		},
	}
}
