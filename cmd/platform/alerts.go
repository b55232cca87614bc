package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/services/alerting"
)

// alertingFlags are the connection flags of `platform alerts` and
// `platform silence`.
type alertingFlags struct {
	cf      clientFlags
	timeout time.Duration
	json    bool
}

func (f *alertingFlags) add(cmd *cobra.Command) {
	f.cf.registerOn(cmd.PersistentFlags())
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 5*time.Second, "how long to wait for an answer")
	cmd.PersistentFlags().BoolVar(&f.json, "json", false, "print JSON")
}

// client connects and runs fn with an alerting client under the timeout.
func (f *alertingFlags) client(cmd *cobra.Command, fn func(ctx context.Context, c alerting.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	f.cf.o.Timeout = f.timeout
	nc, err := f.cf.connect("platform " + cmd.Name())
	if err != nil {
		return err
	}
	defer nc.Close()
	return fn(ctx, alerting.Client{Conn: nc})
}

func (f *alertingFlags) printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newAlertsCmd() *cobra.Command {
	f := &alertingFlags{}
	cmd := &cobra.Command{
		Use:   "alerts [MATCHER...]",
		Short: "List the current alerts (alerts.list)",
		Long: `List the alerts the alerting service holds now (firing, or suppressed
by a silence or an inhibition rule), as a table or with
--json as alerts.list answers them. MATCHERs filter as amtool's do:
severity=critical, instance=~"db-.*", alertname!=Watchdog.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.client(cmd, func(ctx context.Context, c alerting.Client) error {
				as, err := c.Alerts(ctx, args)
				if err != nil {
					return err
				}
				if f.json {
					return f.printJSON(cmd, as)
				}
				printAlerts(cmd, as)
				return nil
			})
		},
	}
	f.add(cmd)
	return cmd
}

func printAlerts(cmd *cobra.Command, as []alerting.AlertStatus) {
	slices.SortStableFunc(as, func(a, b alerting.AlertStatus) int {
		return strings.Compare(a.Labels["alertname"]+"\x00"+labelString(a.Labels), b.Labels["alertname"]+"\x00"+labelString(b.Labels))
	})
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ALERTNAME\tSTATE\tSEVERITY\tSTARTED\tLABELS\tSUMMARY")
	for _, a := range as {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Labels["alertname"], a.Status.State, a.Labels["severity"],
			a.StartsAt.Local().Format(time.DateTime), labelString(a.Labels), a.Annotations["summary"])
	}
	w.Flush()
}

// labelString writes the labels other than alertname and severity as
// name="value" pairs, sorted.
func labelString(lbls map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(lbls)) {
		if k != "alertname" && k != "severity" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, lbls[k]))
		}
	}
	return strings.Join(parts, ",")
}

func newSilenceCmd() *cobra.Command {
	f := &alertingFlags{}
	cmd := &cobra.Command{
		Use:   "silence",
		Short: "Add, list and expire silences (alerts.silence.*)",
		Long: `Manage the alerting service's silences in KV SILENCES, as amtool silence
does: add mutes the alerts its matchers all match, ls lists them, expire
ends them now.`,
	}
	f.add(cmd)
	cmd.AddCommand(newSilenceAddCmd(f), newSilenceListCmd(f), newSilenceExpireCmd(f))
	return cmd
}

func newSilenceAddCmd(f *alertingFlags) *cobra.Command {
	var (
		duration time.Duration
		start    string
		end      string
		author   string
		comment  string
	)
	cmd := &cobra.Command{
		Use:   "add MATCHER...",
		Short: "Add a silence and print its id",
		Long: `Add a silence. MATCHERs are written as amtool's: alertname=InstanceDead,
instance=~"db-.*", severity!=info; a first argument without an operator is
the alert name. The silence starts now (or at --start) and lasts --duration
(or ends at --end); times are RFC 3339.`,
		Example: `  platform silence add InstanceDead instance=i1 --duration 2h --comment "maintenance"`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sl, err := silenceFromFlags(args, start, end, duration, author, comment, time.Now())
			if err != nil {
				return err
			}
			return f.client(cmd, func(ctx context.Context, c alerting.Client) error {
				id, err := c.AddSilence(ctx, sl)
				if err != nil {
					return err
				}
				if f.json {
					return f.printJSON(cmd, map[string]string{"silenceID": id})
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&duration, "duration", time.Hour, "how long the silence lasts")
	fl.StringVar(&start, "start", "", "when the silence starts, RFC 3339 (default: now)")
	fl.StringVar(&end, "end", "", "when the silence ends, RFC 3339 (overrides --duration)")
	fl.StringVar(&author, "author", currentUser(), "who adds the silence (default: the OS user, as amtool's)")
	fl.StringVar(&comment, "comment", "", "why")
	return cmd
}

// silenceFromFlags builds the silence `silence add` sends.
func silenceFromFlags(args []string, start, end string, d time.Duration, author, comment string, now time.Time) (alerting.Silence, error) {
	var sl alerting.Silence
	ms := slices.Clone(args)
	if !strings.ContainsAny(ms[0], "=!~") {
		ms[0] = fmt.Sprintf("alertname=%q", ms[0])
	}
	matchers, err := alerting.MatchersFromStrings(ms)
	if err != nil {
		return sl, err
	}
	sl.Matchers, sl.CreatedBy, sl.Comment = matchers, author, comment
	if sl.Comment == "" {
		return sl, fmt.Errorf("--comment is required: say why the alerts are silenced")
	}
	sl.StartsAt = now
	if start != "" {
		if sl.StartsAt, err = time.Parse(time.RFC3339, start); err != nil {
			return sl, fmt.Errorf("--start: %w", err)
		}
	}
	sl.EndsAt = sl.StartsAt.Add(d)
	if end != "" {
		if sl.EndsAt, err = time.Parse(time.RFC3339, end); err != nil {
			return sl, fmt.Errorf("--end: %w", err)
		}
	}
	if !sl.EndsAt.After(sl.StartsAt) {
		return sl, fmt.Errorf("the silence ends (%s) before it starts (%s)", sl.EndsAt.Format(time.RFC3339), sl.StartsAt.Format(time.RFC3339))
	}
	return sl, nil
}

func newSilenceListCmd(f *alertingFlags) *cobra.Command {
	var expired bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list", "query"},
		Short:   "List the active and pending silences",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.client(cmd, func(ctx context.Context, c alerting.Client) error {
				all, err := c.Silences(ctx)
				if err != nil {
					return err
				}
				ss := all[:0]
				for _, s := range all {
					if expired || s.Status.State != alerting.SilenceExpired {
						ss = append(ss, s)
					}
				}
				slices.SortStableFunc(ss, func(a, b alerting.GettableSilence) int { return a.EndsAt.Compare(b.EndsAt) })
				if f.json {
					return f.printJSON(cmd, ss)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tSTATE\tMATCHERS\tENDS\tCREATED BY\tCOMMENT")
				for _, s := range ss {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Status.State, matcherString(s.Matchers),
						s.EndsAt.Local().Format(time.DateTime), s.CreatedBy, s.Comment)
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&expired, "expired", false, "also list expired silences")
	return cmd
}

func matcherString(ms []alerting.Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		eq := m.IsEqual == nil || *m.IsEqual
		op := "="
		switch {
		case m.IsRegex && eq:
			op = "=~"
		case m.IsRegex:
			op = "!~"
		case !eq:
			op = "!="
		}
		parts[i] = fmt.Sprintf("%s%s%q", m.Name, op, m.Value)
	}
	return strings.Join(parts, " ")
}

func newSilenceExpireCmd(f *alertingFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "expire ID...",
		Short: "End silences now",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.client(cmd, func(ctx context.Context, c alerting.Client) error {
				for _, id := range args {
					if err := c.ExpireSilence(ctx, id); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), "expired", id)
				}
				return nil
			})
		},
	}
}

// currentUser is amtool's default author: $USER, else the OS account.
func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
