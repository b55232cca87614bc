package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/streams"
)

func newStatusCmd() *cobra.Command {
	var (
		cf      clientFlags
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show nodes, meta leader, streams and service instances",
		Long: `Ask the platform-admin service (admin.status) for the cluster's status. When
no admin service answers, the status is gathered from the JetStream API
directly (without the embedded cluster's node view). A last section shows
each consumer group with its worst partition's lag.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			nc, err := cf.connect("platform status")
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := fetchStatus(ctx, nc)
			if err != nil {
				return err
			}
			if st.MetaLeader == "" && !st.Embedded && nc.ConnectedClusterName() != "" {
				// The answering service may lack system account access
				// that this connection has.
				if leader, note := admin.MetaLeader(ctx, nc); leader != "" {
					st.MetaLeader, st.MetaLeaderNote = leader, ""
				} else if st.MetaLeaderNote == "" {
					st.MetaLeaderNote = note
				}
			}
			out := statusOutput{Status: st, ConsumerGroups: consumerGroups(ctx, nc)}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printStatus(cmd, st)
			printGroups(cmd, out.ConsumerGroups)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for answers")
	return cmd
}

func fetchStatus(ctx context.Context, nc *nats.Conn) (*admin.Status, error) {
	msg, err := nc.RequestWithContext(ctx, streams.AdminStatusSubject, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		return admin.Gather(ctx, nc, js, nil, true)
	}
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", streams.AdminStatusSubject, err)
	}
	return admin.DecodeStatus(msg.Data)
}

func printStatus(cmd *cobra.Command, st *admin.Status) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	leader := st.MetaLeader
	switch {
	case leader == "" && st.MetaLeaderNote != "":
		leader = "(" + st.MetaLeaderNote + ")"
	case leader == "":
		leader = "(unknown)"
	}
	fmt.Fprintf(w, "Meta leader: %s\n", leader)
	if len(st.Problems) == 0 {
		fmt.Fprintf(w, "Health: ok\n\n")
	} else {
		fmt.Fprintf(w, "Health: %d problem(s)\n", len(st.Problems))
		for _, p := range st.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "NODE\tRUNNING\tURL")
	for _, n := range st.Nodes {
		name := n.Name
		if n.MetaLeader {
			name += "*"
		}
		fmt.Fprintf(w, "%s\t%v\t%s\n", name, n.Running, n.URL)
	}
	fmt.Fprintln(w, "\nSTREAM\tLEADER\tREPLICAS\tMESSAGES\tBYTES\tFOLLOWERS (lag)")
	for _, s := range st.Streams {
		var peers []string
		for _, p := range s.Peers {
			state := "current"
			switch {
			case p.Offline:
				state = "offline"
			case !p.Current:
				state = "behind"
			}
			peers = append(peers, fmt.Sprintf("%s %s (%d)", p.Name, state, p.Lag))
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", s.Name, s.Leader, s.Replicas, s.Messages, s.Bytes, strings.Join(peers, ", "))
	}
	fmt.Fprintln(w, "\nSERVICE\tINSTANCE\tVERSION\tWEIGHT")
	for _, s := range st.Services {
		weight := "-"
		if s.Weight != nil {
			weight = fmt.Sprintf("%.0f (%s)", *s.Weight, s.WeightReason)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Name, s.ID, s.Version, weight)
	}
	w.Flush()
}
