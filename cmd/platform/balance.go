package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

func newBalanceCmd() *cobra.Command {
	var (
		cf      clientFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "balance",
		Short: "Even out stream and consumer RAFT leaders across nodes now",
		Long: `Ask the platform-balancer service (balancer.balance) to move stream and
consumer leaders until no node leads more than one group above another, and
print the leaders per node before and after.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, err := cf.connect("platform balance")
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			m, err := nc.RequestWithContext(ctx, streams.BalancerBalanceSubject, nil)
			if err != nil {
				return fmt.Errorf("request %s: %w", streams.BalancerBalanceSubject, err)
			}
			if e := service.ParseError(service.JSON, m.Data); e != nil {
				return fmt.Errorf("balance: %s", e.Message)
			}
			var rep balancer.LeaderReport
			if err := json.Unmarshal(m.Data, &rep); err != nil {
				return fmt.Errorf("decode answer: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "leaders before: %v\nleaders after:  %v\nmoved: %d\n", rep.Before, rep.After, rep.Moved)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for the answer")
	return cmd
}
