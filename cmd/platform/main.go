// Command platform runs the event-streaming platform: an embedded NATS
// JetStream cluster and the services on top of it. This package parses
// flags and wires packages together; the logic lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		if !errors.Is(err, errQuiet) {
			fmt.Fprintln(os.Stderr, "platform:", err)
		}
		os.Exit(1)
	}
}

// errQuiet is returned when the command already told the user what failed.
var errQuiet = errors.New("failed")

// newRootCmd returns the platform command with every subcommand, listed
// here once (as app/services.go lists the services), so that what the
// binary can do is read in one place.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "platform",
		Short: "Event-streaming platform on an embedded NATS JetStream cluster",
		Long: `platform runs a RAFT-replicated NATS JetStream cluster inside one process
and the services on top of it: replicator (ingest), txn (multi-key
transactions), detector (failure detection), balancer (weights, routing,
leader placement), alerting (rules and notifications), consume (consumer
groups for any client), and the admin service.

Run "platform run" to start everything on 127.0.0.1, then use the stock
NATS CLI against nats://127.0.0.1:4222.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newRunCmd(),
		newStatusCmd(),
		newTailCmd(),
		newConsumeCmd(),
		newBalanceCmd(),
		newAlertsCmd(),
		newSilenceCmd(),
		newAuthCmd(),
		newBackupCmd(),
		newRestoreCmd(),
		newBenchCmd(),
		newVersionCmd(),
	)
	return root
}
