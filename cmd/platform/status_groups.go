package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/txn"
)

// statusOutput is what `platform status --json` prints: the admin status
// and the consumer groups.
type statusOutput struct {
	*admin.Status
	ConsumerGroups []groupLine `json:"consumer_groups"`
}

// groupLine is one consumer group in `platform status`: its totals and
// its worst partition (the oldest unapplied event).
type groupLine struct {
	Group      string `json:"group"`
	Partitions int    `json:"partitions"`
	Members    int    `json:"members"`
	Head       uint64 `json:"head"`
	// LagEvents is the sum over partitions; a lower bound unless Exact.
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is the worst partition's lag in time.
	LagSeconds float64 `json:"lag_seconds"`
	// Worst is the partition with the oldest unapplied event (-1: none).
	Worst int `json:"worst_partition"`
	// WorstOwner owns it.
	WorstOwner string `json:"worst_owner,omitempty"`
	Exact      bool   `json:"exact"`
	// Error says why the group's status could not be read.
	Error string `json:"error,omitempty"`
}

// consumerGroups reads each consumer group's status (nil when the groups
// cannot be listed: the status then says nothing about them).
func consumerGroups(ctx context.Context, nc *nats.Conn) []groupLine {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil
	}
	store, err := txn.NewStore(nc, txn.WithOpTimeout(2*time.Second))
	if err != nil {
		return nil
	}
	names, err := consume.Groups(ctx, store)
	if err != nil {
		return nil
	}
	out := make([]groupLine, 0, len(names))
	for _, g := range names {
		st, err := consume.Status(ctx, js, store, g)
		if err != nil {
			out = append(out, groupLine{Group: g, Worst: -1, Error: err.Error()})
			continue
		}
		l := groupLine{Group: g, Partitions: st.Partitions, Members: len(st.Members), Head: st.Head,
			LagEvents: st.LagEvents, LagSeconds: st.LagSeconds, Worst: -1, Exact: st.Exact}
		for _, p := range st.PerPartition {
			if p.LagSeconds > 0 && (l.Worst < 0 || p.LagSeconds > st.PerPartition[l.Worst].LagSeconds) {
				l.Worst, l.WorstOwner = p.Partition, p.Owner
			}
		}
		out = append(out, l)
	}
	return out
}

func printGroups(cmd *cobra.Command, groups []groupLine) {
	if len(groups) == 0 {
		return
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nGROUP\tPARTITIONS\tMEMBERS\tHEAD\tLAG EVENTS\tLAG\tWORST PARTITION")
	for _, g := range groups {
		if g.Error != "" {
			fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t(%s)\n", g.Group, g.Error)
			continue
		}
		events := fmt.Sprint(g.LagEvents)
		if !g.Exact {
			events = ">=" + events
		}
		worst := "-"
		if g.Worst >= 0 {
			worst = fmt.Sprintf("%d (%s)", g.Worst, g.WorstOwner)
		}
		lag := (time.Duration(g.LagSeconds * float64(time.Second))).Round(100 * time.Millisecond)
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", g.Group, g.Partitions, g.Members, g.Head, events, lag, worst)
	}
	w.Flush()
}
