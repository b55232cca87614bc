package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/detector/detectorbench"
)

func newBenchDetectorScaleCmd(f *benchFlags) *cobra.Command {
	var opts detectorbench.ScaleIOOptions
	cmd := &cobra.Command{
		Use:   "detector-scale",
		Short: "One detector process on real I/O: 10,000 instances heartbeating from another process",
		Long: `Runs one detector as its own process (platform run --services detector)
against the benchmark's cluster, and another process that heartbeats for
--instances instances over 8 connections and answers the detector's
$SRV.PING probes of them. Once every instance is alive, it measures for
--seconds the detector process's CPU time (from /proc: Linux only), the
heartbeats and probes exchanged, and the MEMBERS and DETECTOR writes stored.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("detector-scale: %w", err)
			}
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				opts.Conn, opts.URL = t.Conn, t.URL
				opts.SpawnDetector = func(url string) *exec.Cmd {
					return exec.Command(self, "run", "--nats", url, "--services", "detector", "--http", "", "--log-level", "error")
				}
				opts.SpawnSenders = func(o detectorbench.SenderOptions) *exec.Cmd {
					return exec.Command(self, "bench", "detector-senders", "--url", o.URL,
						"--instances", strconv.Itoa(o.Instances), "--interval", o.Interval.String(), "--conns", strconv.Itoa(o.Conns))
				}
				p := bench.NewProgress(f.progressOut(), "detector scale (I/O)", int64(opts.Seconds))
				opts.Progress = func() { p.Add(1) }
				r, err := detectorbench.MeasureScaleIO(ctx, opts)
				p.Stop()
				if err != nil {
					return nil, err
				}
				return []bench.Result{r.Result()}, nil
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&opts.Instances, "instances", 10000, "instances heartbeating")
	fl.DurationVar(&opts.Interval, "interval", time.Second, "their heartbeat interval")
	fl.IntVar(&opts.Seconds, "seconds", 30, "seconds measured once every instance is alive")
	return cmd
}

// newBenchDetectorSendersCmd is the process detector-scale heartbeats
// from.
func newBenchDetectorSendersCmd(*benchFlags) *cobra.Command {
	var opts detectorbench.SenderOptions
	cmd := &cobra.Command{
		Use:    "detector-senders",
		Short:  "Heartbeat for many instances and answer their probes (a process of detector-scale)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Out = cmd.OutOrStdout()
			return detectorbench.ServeSenders(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.URL, "url", "", "NATS server")
	fl.IntVar(&opts.Instances, "instances", 10000, "instances")
	fl.DurationVar(&opts.Interval, "interval", time.Second, "heartbeat interval")
	fl.IntVar(&opts.Conns, "conns", 8, "connections")
	return cmd
}
