package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/alerting/alertingbench"
)

func newBenchAlertingCmd(f *benchFlags) *cobra.Command {
	var (
		storm    alertingbench.StormOptions
		post     alertingbench.PostOptions
		ev       alertingbench.EvalOptions
		unscoped bool
	)
	cmd := &cobra.Command{
		Use:   "alerting [all|storm|post|eval]",
		Short: "Alert storm grouping, POST /api/v2/alerts vs Alertmanager, rule evaluation cost",
		Long: `Measure the alerting service, row by row:

  storm  --instances instances over --services services die within --spread:
         their dead records are written to KV MEMBERS as the detector writes
         them, and one alerting instance (the default InstanceDead rule and
         route, group_wait --group-wait) notifies on stream ALERTS. Reports
         the notifications (target: at most one per group, i.e. --services)
         and when the last one was out after the last death was written
         (target: at most group_wait + 1s).
  post   --alerts distinct alerts in batches of --batch through POST
         /api/v2/alerts from --clients clients, then the same batches to a
         real Alertmanager started on a free port when one is installed
         (Debian package prometheus-alertmanager); x_alertmanager is the
         ratio of the rates (target: at least 1).
  eval   one evaluation of --rules rules over --series heartbeat series,
         each rule naming one service (target: under 100 ms); --unscoped
         adds the row where every rule runs over every series.

"all" (the default) runs every row.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"all", "storm", "post", "eval"},
		RunE: func(cmd *cobra.Command, args []string) error {
			which := "all"
			if len(args) == 1 {
				which = args[0]
			}
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				var out []bench.Result
				if which == "all" || which == "eval" {
					ev.Scoped = true
					r, err := alertingbench.MeasureEval(ev)
					if err != nil {
						return out, err
					}
					out = append(out, r)
					if unscoped {
						ev.Scoped = false
						r, err := alertingbench.MeasureEval(ev)
						if err != nil {
							return out, err
						}
						out = append(out, r)
					}
				}
				if which == "all" || which == "post" {
					p := bench.NewProgress(f.progressOut(), "alerting post", 2*int64((max(post.Alerts, 1)+max(post.Batch, 1)-1)/max(post.Batch, 1)))
					post.Progress = func() { p.Add(1) }
					rs, err := alertingbench.MeasurePost(ctx, t, post)
					p.Stop()
					out = append(out, rs...)
					if err != nil {
						return out, err
					}
				}
				if which == "all" || which == "storm" {
					p := bench.NewProgress(f.progressOut(), "alerting storm", int64(max(storm.Instances, 1)))
					storm.Progress = func() { p.Add(1) }
					r, err := alertingbench.RunStorm(ctx, t, storm)
					p.Stop()
					if err != nil {
						return out, err
					}
					out = append(out, r)
				}
				return out, nil
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&storm.Instances, "instances", 10000, "storm: instances that die")
	fl.IntVar(&storm.Services, "services", 10, "storm: services they belong to (= groups)")
	fl.DurationVar(&storm.Spread, "spread", 10*time.Second, "storm: time over which they die")
	fl.DurationVar(&storm.GroupWait, "group-wait", 30*time.Second, "storm: the route's group_wait")
	fl.IntVar(&post.Alerts, "alerts", 50000, "post: distinct alerts posted")
	fl.IntVar(&post.Batch, "batch", 100, "post: alerts per POST")
	fl.IntVar(&post.Clients, "clients", 4, "post: concurrent clients")
	fl.StringVar(&post.Alertmanager, "alertmanager", "", "post: Alertmanager binary (default: prometheus-alertmanager or alertmanager on PATH)")
	fl.IntVar(&ev.Rules, "rules", 1000, "eval: rules")
	fl.IntVar(&ev.Series, "series", 10000, "eval: heartbeat series")
	fl.IntVar(&ev.Runs, "runs", 20, "eval: evaluations timed")
	fl.BoolVar(&unscoped, "unscoped", false, "eval: add the row where every rule runs over every series (slow)")
	return cmd
}
