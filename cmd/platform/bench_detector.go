package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/detector/detectorbench"
)

func init() { benchCommands = append(benchCommands, newBenchDetectorCmd) }

func newBenchDetectorCmd(f *benchFlags) *cobra.Command {
	var (
		ev    detectorbench.EvalOptions
		scale detectorbench.ScaleOptions
		skip  bool
	)
	cmd := &cobra.Command{
		Use:   "detector",
		Short: "Failure detection on simulated traces: ours vs a fixed timeout vs Akka's phi",
		Long: `A deterministic simulation, no cluster: generated heartbeat traces (steady
with jitter, GC-like pauses, a degrading network, crashes with restarts, slow
deaths) are played into three detectors side by side: ours, a fixed timeout
of 3 intervals, and phi accrual with Akka's defaults. Each row reports the
time from a death to the dead verdict (P50/P95/P99) and false positives
(healthy instances declared dead). The predictor is trained on one
slow-deaths trace and scored on another (ROC AUC, warning lead). Last, the
scale row runs 10,000 instances at one heartbeat a second through the
detector's heartbeat path and reports the share of a core it needs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := bench.NewProgress(f.progressOut(), "detector evaluation", int64(len(detectorbench.Scenarios)+1))
			ev.Progress = func() { p.Add(1) }
			rep, err := detectorbench.Evaluate(ev)
			p.Stop()
			if err != nil {
				return err
			}
			results := rep.Results()
			if !skip {
				sp := bench.NewProgress(f.progressOut(), "detector scale", int64(max(scale.Seconds, 1)))
				scale.Progress = func() { sp.Add(1) }
				sr, err := detectorbench.MeasureScale(scale)
				sp.Stop()
				if err != nil {
					return err
				}
				results = append(results, sr.Result())
			}
			if !f.json {
				if err := rep.WriteTable(cmd.OutOrStdout()); err != nil {
					return err
				}
			}
			return f.print(cmd, results...)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&ev.Trace.Instances, "instances", 200, "instances per trace")
	fl.DurationVar(&ev.Trace.Duration, "duration", 120*time.Second, "simulated time per trace")
	fl.DurationVar(&ev.Trace.Interval, "interval", 100*time.Millisecond, "heartbeat interval of the traces")
	fl.Uint64Var(&ev.Trace.Seed, "seed", 1, "trace seed (the held-out predictor trace uses another)")
	fl.IntVar(&scale.Instances, "scale-instances", 10000, "instances of the scale row")
	fl.IntVar(&scale.Seconds, "scale-seconds", 30, "simulated seconds of the scale row")
	fl.BoolVar(&skip, "skip-scale", false, "leave out the scale row")
	return cmd
}
