package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/platform/platform/backup"
	"github.com/platform/platform/natsconn"
)

// clientFlags are the flags of commands that connect to a running platform
// as a client.
type clientFlags struct {
	o natsconn.Options
}

func (c *clientFlags) register(cmd *cobra.Command) { c.registerOn(cmd.Flags()) }

func (c *clientFlags) registerOn(f *pflag.FlagSet) {
	f.StringVar(&c.o.URL, "server", nats.DefaultURL, "NATS URL(s) of the platform, comma-separated")
	f.StringVar(&c.o.Creds, "creds", "", "NATS credentials file")
	f.StringVar(&c.o.NkeySeed, "nkey", "", "nkey seed file")
	f.StringVar(&c.o.CA, "tls-ca", "", "CA certificate to verify the servers")
	f.StringVar(&c.o.Cert, "tls-cert", "", "client certificate")
	f.StringVar(&c.o.Key, "tls-key", "", "client key")
	f.StringVar(&c.o.User, "user", "", "user name of a password user")
	f.StringVar(&c.o.Password, "password", "", "password of --user")
	f.StringVar(&c.o.InboxPrefix, "inbox-prefix", "", "reply subject prefix; under platform run --auth every user must use its own, _INBOX_<user>")
}

func (c *clientFlags) connect(name string) (*nats.Conn, error) {
	o := c.o
	o.Name = name
	return natsconn.Connect(o)
}

func cliLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func newBackupCmd() *cobra.Command {
	var (
		cf    clientFlags
		o     backup.Options
		to    string
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "backup --to DIR [--incremental]",
		Short: "Back up every platform stream and KV bucket to a directory",
		Long: `Take a full backup of every platform stream and KV bucket into DIR with
JetStream's snapshot API (S2-compressed by the server, consumers included)
and a manifest of streams, configurations, last sequences and checksums.

With --incremental, add to the chain already in DIR only what was written
since: per stream, the messages after the manifest's last sequence, as
zstd-compressed segments with checksums. Restore with "platform restore".`,
		Example: `  platform backup --to /backups/2026-11-25
  platform backup --to /backups/2026-11-25 --incremental
  platform backup verify /backups/2026-11-25`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to DIR is required")
			}
			nc, err := cf.connect("platform backup")
			if err != nil {
				return err
			}
			defer nc.Close()
			if !quiet {
				o.Progress = os.Stderr
			}
			o.Logger = cliLogger()
			start := time.Now()
			e, err := backup.Backup(cmd.Context(), nc, to, o)
			if err != nil {
				return err
			}
			var msgs, raw uint64
			for _, s := range e.Streams {
				msgs += s.Messages
				raw += s.Bytes
			}
			secs := time.Since(start).Seconds()
			fmt.Fprintf(cmd.OutOrStdout(), "%s backup %d of %s: %d streams, %d messages, %d bytes of data in %d bytes on disk, %.1fs (%.1f MB/s)\n",
				e.Kind, e.ID, to, len(e.Streams), msgs, raw, e.Size(), secs, float64(raw)/1e6/secs)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "backup directory")
	f.BoolVar(&o.Incremental, "incremental", false, "add what was written since the last backup in --to")
	f.StringSliceVar(&o.Streams, "stream", nil, "streams to back up (default: every platform stream and KV bucket)")
	f.BoolVar(&quiet, "quiet", false, "no progress bars")
	cmd.AddCommand(newBackupVerifyCmd())
	return cmd
}

func newBackupVerifyCmd() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check a backup's checksums and that its chain is complete",
		Long: `Check, without a server, that DIR's manifest starts with a full backup, that
every increment starts where the chain ended, and that every file exists with
its recorded size and checksum and every segment decodes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var progress io.Writer
			if !quiet {
				progress = os.Stderr
			}
			m, err := backup.Verify(args[0], progress)
			if err != nil {
				return err
			}
			var files int
			var size int64
			for _, e := range m.Backups {
				size += e.Size()
				for _, s := range e.Streams {
					files += len(s.Files)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK, 1 full backup and %d increments, %d files, %d bytes\n", args[0], len(m.Backups)-1, files, size)
			return nil
		},
	}
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var (
		cf    clientFlags
		o     backup.RestoreOptions
		from  string
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "restore --from DIR",
		Short: "Restore a backup chain into an empty cluster",
		Long: `Verify the chain in DIR, then restore every stream from the full backup's
snapshot and replay each increment in order. Streams that already exist stop
the restore before anything changes, unless --replace deletes them first.

Messages replayed from increments keep their subject, headers and data (less
the Nats-Expected-* and Nats-Batch-* publish directives) and get new
sequences and timestamps. KV revisions only move forward: a bucket the chain
changed after its full backup is renumbered to start past the highest
revision seen (the chain's, or the replaced stream's), so a client's commit
against a revision read before the restore is refused, never applied to a
different value.`,
		Example: `  platform restore --from /backups/2026-11-25
  platform restore --from /backups/2026-11-25 --replace --replicas 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return fmt.Errorf("--from DIR is required")
			}
			nc, err := cf.connect("platform restore")
			if err != nil {
				return err
			}
			defer nc.Close()
			if !quiet {
				o.Progress = os.Stderr
			}
			o.Logger = cliLogger()
			start := time.Now()
			res, err := backup.Restore(cmd.Context(), nc, from, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %d streams from %s: %d messages from the snapshot, %d replayed from increments, %.1fs\n",
				res.Streams, from, res.Snapshot, res.Replayed, time.Since(start).Seconds())
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "backup directory")
	f.BoolVar(&o.Replace, "replace", false, "delete streams that already exist and restore them")
	f.IntVar(&o.Replicas, "replicas", 0, "replica count of the restored streams (default: as backed up)")
	f.BoolVar(&quiet, "quiet", false, "no progress bars")
	return cmd
}
