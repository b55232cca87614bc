package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

func newConsumeCmd() *cobra.Command {
	var (
		cf      clientFlags
		cr      consume.CreateRequest
		count   int
		headers bool
		max     int
	)
	cmd := &cobra.Command{
		Use:   "consume GROUP",
		Short: "Print the events of a consumer group, decoded, acknowledging each once printed",
		Long: `Take events from consumer group GROUP through the consume service
(consume.<group>.next), print each like "platform tail" does
("<seq>[:<index>] <subject> <payload>"), and acknowledge them
(consume.<group>.ack) once printed. The group is created if it does not exist,
with --filter and --partitions; an existing group with other settings is
refused. Events are at least once: an event printed and not yet acknowledged
when the command is interrupted is handed out again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, err := cf.connect("platform consume")
			if err != nil {
				return err
			}
			defer nc.Close()
			group := args[0]
			// Without settings a group that exists is taken as it is; one
			// that does not is created with the defaults.
			create := cmd.Flags().Changed("filter") || cmd.Flags().Changed("partitions")
			if !create {
				_, err := request[json.RawMessage](nc, streams.ConsumeSubject(group, "status"), struct{}{}, 10*time.Second)
				var e *service.Error
				create = errors.As(err, &e) && e.Code == service.CodeNotFound
				if err != nil && !create {
					return err
				}
			}
			if create {
				if _, err := request[consume.GroupInfo](nc, streams.ConsumeSubject(group, "create"), cr, 10*time.Second); err != nil {
					return err
				}
			}
			return consumeLoop(cmd, nc, group, max, count, headers)
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&cr.Filter, "filter", nil, "subjects of EVENTS the group reads when it is created (default events.>)")
	f.IntVar(&cr.Partitions, "partitions", 0, "partition count when the group is created (default 16)")
	f.IntVar(&count, "count", 0, "exit after this many events (0: run until interrupted)")
	f.IntVar(&max, "max", consume.DefaultNextMax, "events per request")
	f.BoolVar(&headers, "headers", false, "print each event's headers")
	cmd.AddCommand(newConsumeCreateCmd(), newConsumeReplayCmd(), newConsumeStatusCmd())
	return cmd
}

// consumeLoop prints and acknowledges events until count or interrupted.
func consumeLoop(cmd *cobra.Command, nc *nats.Conn, group string, max, count int, headers bool) error {
	ctx := cmd.Context()
	w := cmd.OutOrStdout()
	printed := 0
	for ctx.Err() == nil {
		n := max
		if count > 0 {
			n = min(n, count-printed)
		}
		next, err := request[consume.NextResponse](nc, streams.ConsumeSubject(group, "next"), consume.NextRequest{Max: n, WaitMS: 1000}, 10*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(next.Events) == 0 {
			continue
		}
		var ack consume.AckRequest
		for _, we := range next.Events {
			ev, err := we.Event()
			if err != nil {
				return err
			}
			fmt.Fprintln(w, replicator.FormatEvent(ev, headers))
			ack.Ack = append(ack.Ack, we.Token)
		}
		res, err := request[consume.AckResponse](nc, streams.ConsumeSubject(group, "ack"), ack, 10*time.Second)
		if err != nil {
			return err
		}
		for _, r := range res.Results {
			if r.Error != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "# not acknowledged (%s): %s\n", r.Error.Code, r.Error.Message)
			}
		}
		printed += len(next.Events)
		if count > 0 && printed >= count {
			return nil
		}
	}
	return nil
}

// request sends body as JSON to subject and decodes the answer, or
// returns its error body as an error.
func request[T any](nc *nats.Conn, subject string, body any, timeout time.Duration) (T, error) {
	var out T
	b, err := json.Marshal(body)
	if err != nil {
		return out, err
	}
	resp, err := nc.Request(subject, b, timeout)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return out, fmt.Errorf("%s: no consume service answers (is platform run serving it?)", subject)
		}
		return out, fmt.Errorf("%s: %w", subject, err)
	}
	if e := service.ParseError(service.JSON, resp.Data); e != nil {
		return out, fmt.Errorf("%s: %w", subject, e)
	}
	if err := json.Unmarshal(resp.Data, &out); err != nil {
		return out, fmt.Errorf("%s: answer %.200q: %w", subject, resp.Data, err)
	}
	return out, nil
}

func newConsumeCreateCmd() *cobra.Command {
	var (
		cf      clientFlags
		cr      consume.CreateRequest
		ackWait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create GROUP",
		Short: "Create a consumer group (or check that it has these settings)",
		Long: `Create consumer group GROUP through the consume service
(consume.<group>.create) with its filter, partition count, max deliveries
and ack wait, fixed for the group's life, and print its settings. Creating
an existing group with the same settings succeeds; with others it is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, err := cf.connect("platform consume create")
			if err != nil {
				return err
			}
			defer nc.Close()
			cr.AckWaitMS = ackWait.Milliseconds()
			info, err := request[consume.GroupInfo](nc, streams.ConsumeSubject(args[0], "create"), cr, 10*time.Second)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), info)
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&cr.Filter, "filter", nil, "subjects of EVENTS the group reads (default events.>)")
	f.IntVar(&cr.Partitions, "partitions", 0, "partition count (default 16)")
	f.IntVar(&cr.MaxDeliver, "max-deliver", 0, "deliveries of an event before it goes to DEAD (default 5)")
	f.DurationVar(&ackWait, "ack-wait", 0, "how long a delivered event may stay unsettled (default 30s)")
	return cmd
}

func newConsumeReplayCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "replay-dead GROUP",
		Short: "Put a consumer group's dead letters back for the group to consume again",
		Long: `Move the dead letters of GROUP (stream DEAD, dead.<group>.>) back into
EVENTS under their original subjects, marked for GROUP alone
(Platform-Replay-Group): the group consumes them again, other groups skip
them. Each is removed from DEAD once back. Removing needs the admin role
under platform run --auth.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, err := cf.connect("platform consume replay-dead")
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			n, err := consume.ReplayDead(cmd.Context(), js, args[0])
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d dead letters of group %s\n", n, args[0])
			return err
		},
	}
	cf.register(cmd)
	return cmd
}

func newConsumeStatusCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status GROUP",
		Short: "Print a consumer group's settings, owners and positions as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, err := cf.connect("platform consume status")
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := request[json.RawMessage](nc, streams.ConsumeSubject(args[0], "status"), struct{}{}, 10*time.Second)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), st)
		},
	}
	cf.register(cmd)
	return cmd
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
