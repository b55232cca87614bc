package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/balancer/balancerbench"
)

func init() { benchCommands = append(benchCommands, newBenchBalancerCmd) }

func newBenchBalancerCmd(f *benchFlags) *cobra.Command {
	var o balancerbench.Options
	cmd := &cobra.Command{
		Use:   "balancer",
		Short: "Routing with one slow instance: queue group vs round robin vs weights vs router vs proxy",
		Long: `Linkerd's "beyond round robin" scenario: instances of a test micro service
answer after a sleep of about 2 ms with jitter; for the middle third of each
mode's run one instance turns 10x slower, then recovers. The modes run in
turn against the same instances: the queue group (NATS picks at random),
round robin, the reference document's weights alone (weighted random over
WEIGHTS), the P2C router, and route.<subject> through the balancer. Each row
gives P50/P95/P99/P99.9 overall and during the slow third, the slow
instance's share while slow, and how long its share took to come back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				o.Connect, o.JS = t.Connect, t.JS
				total := int64(len(balancerbench.Modes)) * int64(max(o.Duration, 3*time.Second)/time.Second)
				p := bench.NewProgress(f.progressOut(), "balancer", total)
				o.Progress = func() { p.Add(1) }
				modes, err := balancerbench.Run(ctx, o)
				p.Stop()
				if !f.json {
					writeBalancerTable(cmd.OutOrStdout(), modes)
				}
				results := make([]bench.Result, len(modes))
				for i, m := range modes {
					results[i] = m.Result()
				}
				return results, err
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Instances, "instances", 5, "instances of the test service")
	fl.DurationVar(&o.ServiceTime, "service-time", 2*time.Millisecond, "mean service time")
	fl.Float64Var(&o.SlowFactor, "slow-factor", 10, "how much slower the slow instance gets")
	fl.DurationVar(&o.Duration, "duration", 30*time.Second, "run time of each mode (thirds: healthy, slow, recovered)")
	fl.IntVar(&o.Concurrency, "concurrency", 8, "closed-loop clients")
	return cmd
}

// writeBalancerTable prints the scenario's figures per mode.
func writeBalancerTable(w io.Writer, modes []balancerbench.ModeResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\tp50\tp95\tp99\tp99.9\tslow p50\tslow p99\tslow p99.9\tslow share\trecovered share\trecovery\terrors")
	for _, m := range modes {
		rec := "never"
		if m.Recovery >= 0 {
			rec = fmt.Sprintf("%.0fs", m.Recovery.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f%%\t%.1f%%\t%s\t%d\n", m.Mode,
			m.All.Percentile(50), m.All.Percentile(95), m.All.Percentile(99), m.All.Percentile(99.9),
			m.Slow.Percentile(50), m.Slow.Percentile(99), m.Slow.Percentile(99.9),
			m.SlowShare*100, m.RecoveredShare*100, rec, m.Errors)
	}
	tw.Flush()
	fmt.Fprintln(w, "(latencies in ms; slow = the middle third, while one instance is 10x slower)")
}
