package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/services/detector/detectorbench"
)

func newBenchDetectorRecordCmd(f *benchFlags) *cobra.Command {
	var (
		opts detectorbench.RecordOptions
		out  string
	)
	cmd := &cobra.Command{
		Use:   "detector-record",
		Short: "Record real heartbeat timing from instance processes, for bench detector --replay",
		Long: `Starts a NATS server on 127.0.0.1 and six processes of micro service
instances heartbeating to it: a quiet one, one under CPU contention, one
paused with SIGSTOP/SIGCONT (heavy-tailed pause lengths), one behind a
delaying proxy; a quiet one is killed (a crash) and one stopped for good (a
lost host), and the contended, paused and delayed ones die later. Each
heartbeat's arrival is written to --out as JSON, for
platform bench detector --replay FILE.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("detector-record: --out is required")
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("detector-record: %w", err)
			}
			opts.Spawn = func(o detectorbench.InstanceOptions) *exec.Cmd {
				return exec.Command(self, "bench", "detector-instances", "--url", o.URL, "--service", o.Service,
					"--instances", strconv.Itoa(o.Instances), "--interval", o.Interval.String(), "--burners", strconv.Itoa(o.Burners))
			}
			p := bench.NewProgress(f.progressOut(), "recording", int64(opts.Duration/time.Second))
			opts.Progress = func() { p.Add(1) }
			rec, err := detectorbench.Record(cmd.Context(), opts)
			p.Stop()
			if err != nil {
				return err
			}
			file, err := os.Create(out)
			if err != nil {
				return fmt.Errorf("detector-record: %w", err)
			}
			if _, err := rec.WriteTo(file); err != nil {
				file.Close()
				return err
			}
			if err := file.Close(); err != nil {
				return fmt.Errorf("detector-record: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "recorded %d instances for %s to %s\n", len(rec.Instances), opts.Duration, out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&out, "out", "", "file to write the recording to")
	fl.DurationVar(&opts.Duration, "duration", 60*time.Second, "how long to record (deaths fall after 30 s from 45 s up)")
	fl.DurationVar(&opts.Interval, "interval", 100*time.Millisecond, "heartbeat interval of the instances")
	fl.IntVar(&opts.PerProcess, "per-process", 10, "instances per process")
	fl.Uint64Var(&opts.Seed, "seed", 1, "seed of the pauses and the proxy's delays")
	return cmd
}

// newBenchDetectorInstancesCmd is what detector-record runs in each
// process it records.
func newBenchDetectorInstancesCmd(*benchFlags) *cobra.Command {
	var opts detectorbench.InstanceOptions
	cmd := &cobra.Command{
		Use:    "detector-instances",
		Short:  "Run heartbeating micro service instances (a process of detector-record)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return detectorbench.ServeInstances(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.URL, "url", "", "NATS server")
	fl.StringVar(&opts.Service, "service", "rec", "micro service name")
	fl.IntVar(&opts.Instances, "instances", 10, "instances")
	fl.DurationVar(&opts.Interval, "interval", 100*time.Millisecond, "heartbeat interval")
	fl.IntVar(&opts.Burners, "burners", 0, "busy goroutines competing for one thread")
	return cmd
}
