package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/detector/detectorbench"
)

func newBenchDetectorCmd(f *benchFlags) *cobra.Command {
	var (
		ev     detectorbench.EvalOptions
		scale  detectorbench.ScaleOptions
		skip   bool
		plot   string
		replay []string
	)
	cmd := &cobra.Command{
		Use:   "detector",
		Short: "Failure detection on heterogeneous fleets: ours vs tuned fixed timeouts and Akka's phi",
		Long: `A deterministic simulation, no cluster. Generated traces mix classes of
instances in one fleet: quiet; GC-heavy with heavy-tailed pauses (Pareto, up
to 3 s, 30 intervals at 100 ms); a jittery, lossy network; degrading before
death. A death is a crash (the connection closes) or a lost host (it goes
silent). Each baseline (a fixed timeout; phi accrual with Akka's constants
scaled to the interval) is swept on training traces and its best
configuration (lowest detection P99 with no false positive) is scored with
ours, on its defaults, on held-out traces and on replayed recordings
(--replay). Rows report detection time (P50/P99) and false positives per
1,000 instance-hours, by class and kind of death; false verdicts in the first
30 s are counted apart. --plot draws every configuration. The predictor is
trained on one slow-deaths trace and scored on another. Last, the scale row
runs 10,000 instances at one heartbeat a second through the detector's
heartbeat path in this process, without I/O; platform bench detector-scale
measures a detector process on real connections.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			live, err := detectorbench.LiveRecording()
			if err != nil {
				return err
			}
			ev.Recordings = append(ev.Recordings, live)
			for _, path := range replay {
				r, err := detectorbench.ReadRecording(path)
				if err != nil {
					return err
				}
				ev.Recordings = append(ev.Recordings, r)
			}
			p := bench.NewProgress(f.progressOut(), "detector evaluation", int64(ev.Steps()))
			ev.Progress = func() { p.Add(1) }
			rep, err := detectorbench.Evaluate(ev)
			p.Stop()
			if err != nil {
				return err
			}
			if plot != "" {
				if err := rep.Plot(plot); err != nil {
					return err
				}
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
	fl.StringSliceVar(&replay, "replay", nil, "also replay these recordings (platform bench detector-record); the one shipped is always replayed")
	fl.StringVar(&plot, "plot", "", "draw detection P99 against false positives of every configuration to this SVG file")
	return cmd
}
