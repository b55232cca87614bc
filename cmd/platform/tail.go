package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/platform/platform/services/replicator"
)

func newTailCmd() *cobra.Command {
	var (
		cf      clientFlags
		all     bool
		from    string
		count   int
		headers bool
	)
	cmd := &cobra.Command{
		Use:   "tail SUBJECT",
		Short: "Print the events stored under a subject, decoded",
		Long: `Print the events of the EVENTS stream stored under SUBJECT (wildcards
allowed, e.g. events.orders or 'events.>'), one per line as
"<seq>[:<index>] <subject> <payload>". Envelopes and compression are undone;
<index> is the event's place in its envelope. By default only new events are
printed; --all starts at the beginning, --from SEQ[:INDEX] at a position.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var o replicator.TailOptions
			o.All, o.Count, o.Headers = all, count, headers
			if from != "" {
				p, err := parsePosition(from)
				if err != nil {
					return err
				}
				o.From = p
			}
			nc, err := cf.connect("platform tail")
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			return replicator.Tail(cmd.Context(), js, args[0], cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	cf.register(cmd)
	f.BoolVar(&all, "all", false, "print from the start of the stream")
	f.StringVar(&from, "from", "", "print from position SEQ or SEQ:INDEX")
	f.IntVar(&count, "count", 0, "exit after this many events (0: run until interrupted)")
	f.BoolVar(&headers, "headers", false, "print each event's headers")
	return cmd
}

func parsePosition(s string) (replicator.Position, error) {
	seqStr, idxStr, hasIdx := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil || seq == 0 {
		return replicator.Position{}, fmt.Errorf("bad position %q: want SEQ or SEQ:INDEX", s)
	}
	p := replicator.Position{Seq: seq}
	if hasIdx {
		idx, err := strconv.Atoi(idxStr)
		if err != nil || idx < 0 {
			return replicator.Position{}, fmt.Errorf("bad position %q: want SEQ or SEQ:INDEX", s)
		}
		p.Index = idx
	}
	return p, nil
}
