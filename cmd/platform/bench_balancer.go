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
WEIGHTS), the P2C router with Finagle's Peak-EWMA (router_peak) and with
the default EWMA (router), route.<subject> through the balancer (proxy), and
the router while an instance is killed (router_kill). Every mode's clients
share one connection. Each row gives P50/P95/P99/P99.9 overall, in the
healthy first third and during the slow third, the slow instance's share
while slow, and how long its share took to come back. Then, for the slow
third: the P99 of the service time routing chose (the latency on an idle
machine), the share of requests over 10 ms and which instance answered
them, and each instance's latency and overshoot (latency beyond the service
time asked for: the hops plus the machine's scheduling noise).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				o.Connect, o.JS = t.Connect, t.JS
				runs := int64(max(len(o.Modes), 1))
				if o.Interleave {
					runs = 1
				}
				total := runs * int64(max(o.Duration, 3*time.Second)/time.Second)
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
	fl.Float64Var(&o.Rate, "rate", 0, "pace the clients to this many requests a second in all (0: closed loop, as fast as answers come)")
	fl.BoolVar(&o.Interleave, "interleave", false, "run the modes at once, each client taking the next mode for each request, so every mode meets the same machine noise (without the kill mode)")
	fl.StringSliceVar(&o.Modes, "modes", balancerbench.Modes, "modes to run, in order")
	return cmd
}

// writeBalancerTable prints the scenario's figures per mode, then where
// the slow third's latency came from: per answering instance, and the
// service time routing chose apart from the machine's scheduling noise.
func writeBalancerTable(w io.Writer, modes []balancerbench.ModeResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\tp50\tp95\tp99\tp99.9\thealthy p50\thealthy p99\tslow p50\tslow p99\tslow p99.9\tslow share\trecovered share\trecovery\terrors")
	for _, m := range modes {
		share, recShare, rec := fmt.Sprintf("%.1f%%", m.SlowShare*100), fmt.Sprintf("%.1f%%", m.RecoveredShare*100), "never"
		if m.Recovery >= 0 {
			rec = fmt.Sprintf("%.0fs", m.Recovery.Seconds())
		}
		if m.Kill != nil { // no instance turns slow in this mode
			share, recShare, rec = "-", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%d\n", m.Mode,
			m.All.Percentile(50), m.All.Percentile(95), m.All.Percentile(99), m.All.Percentile(99.9),
			m.Healthy.Percentile(50), m.Healthy.Percentile(99),
			m.Slow.Percentile(50), m.Slow.Percentile(99), m.Slow.Percentile(99.9),
			share, recShare, rec, m.Errors)
	}
	tw.Flush()
	fmt.Fprintln(w, "(latencies in ms; healthy = the first third, slow = the middle third, while one instance is 10x slower)")

	fmt.Fprintln(w, "\nSlow third: the service time routing chose (what each request would take on an idle machine) and requests over 10 ms")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\tservice p50\tservice p99\tservice p99.9\tover 10ms\tof which slow instance")
	for _, m := range modes {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f%%\t%.0f%%\n", m.Mode,
			m.SlowService.Percentile(50), m.SlowService.Percentile(99), m.SlowService.Percentile(99.9),
			m.Over10*100, m.Over10Slow*100)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nSlow third by answering instance (0 is the slow one; overshoot = latency beyond the service time asked for)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\tinstance\trequests\tp50\tp99\tp99.9\tovershoot p50\tovershoot p99\tover 10ms")
	for _, m := range modes {
		for i, in := range m.Instances {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f%%\n", m.Mode, i, in.Requests,
				in.Latency.Percentile(50), in.Latency.Percentile(99), in.Latency.Percentile(99.9),
				in.Overshoot.Percentile(50), in.Overshoot.Percentile(99), in.Over10*100)
		}
	}
	tw.Flush()

	for _, m := range modes {
		if k := m.Kill; k != nil {
			forgot := "did not forget it within 5 s"
			if k.Forgotten >= 0 {
				forgot = fmt.Sprintf("forgot it %.1f ms after the kill", float64(k.Forgotten.Microseconds())/1000)
			}
			if k.LastChoice > 0 {
				forgot = fmt.Sprintf("last chose it %.1f ms after the kill and %s", float64(k.LastChoice.Microseconds())/1000, forgot)
			}
			fmt.Fprintf(w, "\n%s: the last instance killed a third of the way in with %d request(s) in flight on it; %d request(s) lost; the router %s\n",
				m.Mode, k.InFlight, k.Lost, forgot)
		}
	}
}
