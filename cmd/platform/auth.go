package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/platform/platform/auth"
)

func newAuthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Users and roles of platform run --auth",
		Long: `Roles (NATS permissions):

  admin     anything; the platform provisions its streams as the admin
  service   what the platform's services need: everything except creating,
            changing, deleting, purging, snapshotting or restoring streams
            and account/server APIs
  producer  publish ingest.> and txn.> requests and receive the replies;
            nothing else (no reading EVENTS, no direct KV writes, no
            heartbeats, no alerts.* subjects, no JetStream API)
  reader    consume EVENTS, DETECTOR and ALERTS with consumers of its own
            and read the KV buckets; no deleting or listing consumers

Each user receives replies only under its own inbox prefix, _INBOX_<name>:
clients pass it (nats --inbox-prefix _INBOX_producer, nats.CustomInboxPrefix,
platform ... --inbox-prefix _INBOX_producer).`,
	}
	var dir string
	initCmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Write a starter users file with a fresh nkey per role",
		Long: `Write DIR/users.json with four users (platform: service, admin, producer,
reader), each with a fresh nkey whose seed goes to DIR/<name>.nk (mode 0600).
The platform logs in as "platform" using its seed file; give the other seeds
to the clients (nats --nkey DIR/producer.nk --inbox-prefix _INBOX_producer ...).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := auth.Init(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and a seed file per user; start with: platform run --auth %s\n", path, path)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", ".", "directory for users.json and the seed files")
	cmd.AddCommand(initCmd)
	return cmd
}
