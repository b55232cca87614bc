package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/platform/platform/app"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/internal/version"
)

func newRunCmd() *cobra.Command {
	var (
		o         = app.Options{Catalog: app.Services()}
		sync      string
		logFormat string
		logLevel  string
		withCon   bool
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start the embedded cluster and the platform's services",
		Long: `Start a JetStream cluster inside this process (3 nodes on 127.0.0.1 by
default, file storage under ./data), provision the platform's streams and KV
buckets, start the services and serve /metrics, /healthz and /readyz.

One node of a multi-host cluster:   platform run --config deploy/nats.conf
Services only, on any NATS cluster: platform run --nats nats://host:4222 --services txn,detector

TLS and permissions for the embedded nodes: --tls-cert/--tls-key turn on TLS
for clients and for the routes between nodes (--tls-ca verifies the peers,
--tls-verify requires client certificates too); --auth FILE admits only the
file's users, each with its role's permissions. With --config the file's tls
and authorization blocks apply and --tls-*/--nkey/--creds are this process's
own client side.`,
		Example: `  platform run
  platform run --nodes 1 --data-dir /var/lib/platform --sync 1s
  platform run --data-dir /var/lib/platform-new --restore-from /backups/2026-11-25
  platform run --nats nats://10.0.0.1:4222,nats://10.0.0.2:4222 --creds app.creds
  platform auth init --dir /etc/platform/auth
  platform run --tls-cert node.pem --tls-key node-key.pem --tls-ca ca.pem --auth /etc/platform/auth/users.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			if v := version.String(); !version.Valid(v) {
				return fmt.Errorf("this binary's version %q (set at build time) is not a semantic version such as 1.2.3: NATS micro services refuse it", v)
			}
			if err := parseSync(sync, &o.Cluster); err != nil {
				return err
			}
			if o.NATS != "" && (cmd.Flags().Changed("nodes") || cmd.Flags().Changed("config")) {
				return fmt.Errorf("--nats runs services only: it cannot be combined with --nodes or --config")
			}
			o.Logger = logger
			o.Cluster.Logger = logger
			o.NoConsole = !withCon
			a, err := app.New(o)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Cluster.Nodes, "nodes", 3, "embedded nodes to run (1, or 3 and more)")
	f.StringVar(&o.Cluster.DataDir, "data-dir", "./data", "directory for the nodes' JetStream storage")
	f.IntVar(&o.Cluster.ClientPort, "client-port", 4222, "first node's client port; node k uses port+k-1")
	f.IntVar(&o.Cluster.ClusterPort, "cluster-port", 6222, "first node's cluster (route) port; node k uses port+k-1")
	f.StringVar(&o.HTTPAddr, "http", "127.0.0.1:9090", `address serving /metrics, /healthz and /readyz ("" disables)`)
	f.BoolVar(&withCon, "console", true, "serve the console at / on --http (without --auth: to loopback clients only)")
	f.StringVar(&o.Cluster.ConfigFile, "config", "", "start ONE node from a nats-server config file (multi-host clusters)")
	f.StringVar(&o.NATS, "nats", "", "start no server: run services against this NATS cluster (comma-separated URLs)")
	f.StringVar(&o.Creds, "creds", "", "NATS credentials file to log in with (with --nats or --config)")
	f.StringVar(&o.NkeySeed, "nkey", "", "nkey seed file to log in with (with --nats or --config)")
	f.StringVar(&o.InboxPrefix, "inbox-prefix", "", "reply subject prefix of this process, e.g. _INBOX_platform for a users file's service user (with --nats or --config)")
	f.StringVar(&o.ProvisionNkey, "provision-nkey", "", "nkey seed file of a user that may create and update streams, used only to provision them (with --nats or --config)")
	f.StringVar(&o.ProvisionCreds, "provision-creds", "", "credentials file of a user that may create and update streams, used only to provision them (with --nats or --config)")
	f.StringVar(&o.TLSCA, "tls-ca", "", "CA certificate: embedded nodes verify routes (and clients with --tls-verify) with it; with --nats/--config it verifies the servers")
	f.StringVar(&o.TLSCert, "tls-cert", "", "certificate: embedded nodes serve clients and routes with it (TLS on); with --nats/--config it is our client certificate")
	f.StringVar(&o.TLSKey, "tls-key", "", "key of --tls-cert")
	f.BoolVar(&o.TLSVerify, "tls-verify", false, "embedded nodes require client certificates signed by --tls-ca (mutual TLS)")
	f.StringVar(&o.Auth, "auth", "", `users file with roles admin, service, producer, reader (see "platform auth init"); embedded nodes accept only its users`)
	f.StringVar(&o.RestoreFrom, "restore-from", "", "restore this backup directory (platform backup) into the embedded nodes before the services start; the data directory must be empty")
	f.IntVar(&o.Replicas, "replicas", 0, "stream replicas (default: 3 on 3+ servers, else 1)")
	f.StringSliceVar(&o.Services, "services", []string{"all"}, "services to run: all, or a comma-separated list of "+strings.Join(app.ServiceNames(), ","))
	f.StringVar(&sync, "sync", "always", `JetStream fsync policy: "always" (fsync before every ack) or an interval such as 2m`)
	f.DurationVar(&o.HeartbeatInterval, "heartbeat", time.Second, "service instance heartbeat interval")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	// Each service declares its own flags (the replicator's --ingest-*).
	for _, s := range o.Catalog {
		if s.Flags != nil {
			s.Flags(f)
		}
	}
	return cmd
}

// parseSync reads --sync: "always" or a positive duration.
func parseSync(v string, o *cluster.Options) error {
	if v == "always" {
		o.SyncAlways = true
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf(`--sync %q: want "always" or a positive duration such as 1s or 2m`, v)
	}
	o.SyncInterval = d
	return nil
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
