// Package app wires the platform together: the embedded cluster (or a
// connection to an external one), stream provisioning, the services, and
// the HTTP endpoints for metrics and health. cmd/platform parses flags into
// Options (each service's own flags come from its entry in Services) and
// calls Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/platform/platform/backup"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/console"
	"github.com/platform/platform/natsconn"
	"github.com/platform/platform/streams"
)

// Options configure one platform process.
type Options struct {
	// Cluster configures the embedded cluster; ignored when NATS is set.
	Cluster cluster.Options
	// NATS is a comma-separated list of URLs of an external cluster; when
	// set no server is started and only the services run.
	NATS string
	// Creds is a NATS credentials file for the external cluster.
	Creds string
	// TLSCA, TLSCert and TLSKey are PEM files. With --nats or --config
	// they are this process's client side (CA verifies the servers, cert
	// and key authenticate us). Embedded nodes otherwise serve clients and
	// routes with cert and key, verify peers with CA, and this process
	// connects with the same files.
	TLSCA, TLSCert, TLSKey string
	// TLSVerify makes embedded nodes require client certificates signed by
	// TLSCA (mutual TLS).
	TLSVerify bool
	// Auth is a users file (package auth) for the embedded nodes: only its
	// users may connect, each with its role's permissions; this process
	// logs in as its service user.
	Auth string
	// NkeySeed is an nkey seed file this process logs in with (with --nats
	// or --config).
	NkeySeed string
	// InboxPrefix is this process's inbox prefix (with --nats or --config;
	// under --auth it is the service user's, auth.InboxPrefix).
	InboxPrefix string
	// ProvisionNkey and ProvisionCreds log in a separate connection that
	// creates and updates the streams, for a service credential that may
	// not (with --nats or --config; under --auth the users file's admin
	// provisions). Default: this process's own connection.
	ProvisionNkey, ProvisionCreds string
	// RestoreFrom is a backup directory (package backup) to restore into
	// the embedded cluster before its streams are provisioned and the
	// services start; the data directory must hold no data yet.
	RestoreFrom string
	// Replicas overrides the stream replica count (default: 3 on a cluster
	// of three or more servers, else 1).
	Replicas int
	// Catalog lists every service this process can run, in start order,
	// each entry's options already set (default: Services(), every option
	// at its default). cmd/platform registers the entries' flags on its
	// run command, so parsing flags sets them.
	Catalog []Service
	// Services lists the services to run by name (empty or "all": every
	// one in Catalog).
	Services []string
	// HTTPAddr serves /metrics, /healthz and /readyz ("" disables HTTP),
	// and the console at / (package console).
	HTTPAddr string
	// NoConsole leaves the console off HTTPAddr.
	NoConsole bool
	// HeartbeatInterval is how often every service instance heartbeats
	// (default 1s).
	HeartbeatInterval time.Duration
	// StopTimeout bounds each shutdown step (default 10s).
	StopTimeout time.Duration
	// Logger is the process logger (default slog.Default()).
	Logger *slog.Logger
	// Registry is the process's Prometheus registry (default: a new one
	// with the Go and process collectors).
	Registry *prometheus.Registry
}

func (o *Options) setDefaults() {
	if o.Catalog == nil {
		o.Catalog = Services()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Cluster.Logger == nil {
		o.Cluster.Logger = o.Logger
	}
}

func (o *Options) validate() error {
	if err := checkList(o.Catalog); err != nil {
		return err
	}
	if _, err := selectServices(o.Catalog, o.Services); err != nil {
		return err
	}
	embedded := o.NATS == "" && o.Cluster.ConfigFile == ""
	if embedded && (o.Creds != "" || o.NkeySeed != "" || o.InboxPrefix != "" || o.ProvisionNkey != "" || o.ProvisionCreds != "") {
		return errors.New("--creds, --nkey, --inbox-prefix and --provision-* apply with --nats or --config; embedded nodes take --auth")
	}
	if o.ProvisionNkey != "" && o.ProvisionCreds != "" {
		return errors.New("give one of --provision-nkey and --provision-creds")
	}
	if !embedded && (o.Auth != "" || o.TLSVerify) {
		return errors.New("--auth and --tls-verify configure embedded nodes: with --config use its authorization and tls blocks")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if embedded && o.TLSCA != "" && o.TLSCert == "" {
		return errors.New("--tls-ca needs --tls-cert and --tls-key for embedded nodes")
	}
	for _, s := range o.Catalog {
		if s.Validate != nil {
			if err := s.Validate(); err != nil {
				return err
			}
		}
	}
	if o.RestoreFrom != "" {
		if !embedded {
			return errors.New("--restore-from restores into the embedded nodes: against another cluster, run platform restore first")
		}
		if err := emptyDataDir(o.Cluster.DataDir); err != nil {
			return err
		}
		if _, err := backup.Verify(o.RestoreFrom, nil); err != nil {
			return fmt.Errorf("--restore-from: %w", err)
		}
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		return fmt.Errorf("replicas must be between 1 and 5, got %d", o.Replicas)
	}
	return nil
}

// emptyDataDir refuses a data directory that holds anything: a restore
// goes into a new platform, never over one's data.
func emptyDataDir(dir string) error {
	if dir == "" {
		dir = "data" // cluster.Options' default
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--restore-from: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("--restore-from: data directory %s already holds data: restore into an empty one (or restore this platform with platform restore --replace)", dir)
	}
	return nil
}

// App is one platform process. Close releases what Run acquired, last
// acquired first; it is safe to call twice.
type App struct {
	opts     Options
	conn     natsconn.Options // how this process's services connect
	prov     natsconn.Options // how it provisions the streams
	log      *slog.Logger
	selected []Service // in start order

	ready    chan struct{}
	mu       sync.Mutex
	cleanups []func()
	cluster  *cluster.Cluster
	nc       *nats.Conn
	js       jetstream.JetStream
	httpAddr string
	replicas int
	phase    error // what start-up waits for; nil once services start
	console  *console.Console
	sups     []*supervisor // one per started service, in start order
}

// New validates the options.
func New(opts Options) (*App, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	selected, _ := selectServices(opts.Catalog, opts.Services)
	conn, prov, err := opts.security()
	if err != nil {
		return nil, err
	}
	return &App{opts: opts, conn: conn, prov: prov, log: opts.Logger, selected: selected, ready: make(chan struct{}), phase: errors.New("starting")}, nil
}

// Ready is closed once the cluster, streams, HTTP and every service are up.
func (a *App) Ready() <-chan struct{} { return a.ready }

// HTTPAddr returns the address HTTP listens on, once Ready.
func (a *App) HTTPAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.httpAddr
}

// Cluster returns the embedded cluster (nil with --nats), once Ready.
func (a *App) Cluster() *cluster.Cluster {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cluster
}

func (a *App) onClose(f func()) {
	a.mu.Lock()
	a.cleanups = append(a.cleanups, f)
	a.mu.Unlock()
}

// Close runs the cleanups in reverse order. Run calls it on return.
func (a *App) Close() {
	for {
		a.mu.Lock()
		if len(a.cleanups) == 0 {
			a.mu.Unlock()
			return
		}
		f := a.cleanups[len(a.cleanups)-1]
		a.cleanups = a.cleanups[:len(a.cleanups)-1]
		a.mu.Unlock()
		f()
	}
}

// Run starts everything, serves until ctx is done, then shuts down in
// order: services, HTTP, the client connection, the servers. It returns
// early only for what cannot heal: a port in use, a bad configuration, a
// stream change JetStream refuses. Whatever is only briefly unavailable
// (no meta leader yet, a stream without a leader) is waited out, with
// /readyz saying what is awaited, and a service that fails is restarted.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	start := time.Now()
	if a.opts.HTTPAddr != "" {
		if err := a.serveHTTP(); err != nil {
			return err
		}
	}
	a.setPhase(errors.New("starting the embedded cluster"))
	if err := a.startCluster(ctx); err != nil {
		return err
	}
	a.setPhase(errors.New("connecting to NATS"))
	if err := a.connect(); err != nil {
		return err
	}
	if a.opts.RestoreFrom != "" {
		a.setPhase(errors.New("restoring " + a.opts.RestoreFrom))
		if err := a.restore(ctx); err != nil {
			return err
		}
	}
	a.setPhase(errors.New("provisioning streams"))
	if err := a.ensureStreams(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // asked to stop while waiting for JetStream
		}
		return err
	}
	if err := a.registerConsumerMetrics(); err != nil {
		return err
	}
	a.setPhase(nil)
	a.startConsole()
	svcCtx, stopServices := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	a.onClose(func() {
		stopServices()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(a.opts.StopTimeout):
			a.log.Warn("services did not stop in time", "timeout", a.opts.StopTimeout)
		}
	})
	if err := a.startServices(ctx, svcCtx, &wg); err != nil {
		return err
	}
	allReady := make(chan struct{})
	go func() {
		defer close(allReady)
		for _, s := range a.sups {
			select {
			case <-s.firstReady:
			case <-ctx.Done():
				return
			}
		}
	}()
	select {
	case <-allReady:
		if ctx.Err() == nil {
			close(a.ready)
			a.log.Info("platform ready", "took", time.Since(start).Round(time.Millisecond), "services", len(a.sups), "http", a.HTTPAddr())
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	a.log.Info("shutting down")
	return nil
}

// setPhase records what start-up waits for (nil: done), for /readyz.
func (a *App) setPhase(err error) {
	a.mu.Lock()
	a.phase = err
	a.mu.Unlock()
}

func (a *App) startCluster(ctx context.Context) error {
	if a.opts.NATS != "" {
		return nil
	}
	t := time.Now()
	c, err := cluster.Start(ctx, a.opts.Cluster)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.cluster = c
	a.mu.Unlock()
	a.onClose(c.Shutdown)
	reg := a.opts.Registry
	if err := reg.Register(cluster.NewCollector(c)); err != nil {
		return fmt.Errorf("register cluster metrics: %w", err)
	}
	a.log.Info("cluster ready", "component", "cluster", "nodes", len(c.Nodes()), "meta_leader", c.MetaLeader(),
		"urls", strings.Join(c.ClientURLs(), ","), "took", time.Since(t).Round(time.Millisecond))
	return nil
}

// url is where this process connects.
func (a *App) url() string {
	if a.cluster != nil {
		return strings.Join(a.cluster.ClientURLs(), ",")
	}
	return a.opts.NATS
}

func (a *App) connect() error {
	co := a.conn
	co.URL, co.Name, co.Logger = a.url(), "platform", a.log
	nc, err := natsconn.Connect(co)
	if err != nil {
		return err
	}
	a.onClose(func() {
		if err := drain(nc, a.opts.StopTimeout); err != nil {
			a.log.Warn("drain connection", "err", err)
		}
	})
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	a.mu.Lock()
	a.nc, a.js = nc, js
	a.mu.Unlock()
	a.log.Info("connected", "component", "nats-client", "url", nc.ConnectedUrlRedacted())
	return nil
}

// drain drains nc and waits, bounded, until it is closed.
func drain(nc *nats.Conn, timeout time.Duration) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return err
	}
	select {
	case <-closed:
		return nil
	case <-time.After(timeout):
		nc.Close()
		return errors.New("drain timed out")
	}
}

// replicaCount is the stream replica count for this deployment.
func (a *App) replicaCount() int {
	switch {
	case a.opts.Replicas > 0:
		return a.opts.Replicas
	case a.cluster != nil:
		return a.cluster.Replicas()
	case len(a.nc.Servers()) >= 3:
		return 3
	default:
		return 1
	}
}

// provisioner returns the connection that changes streams: the services'
// own, or one of its own as the admin when the services' role may not
// (closed by the returned func).
func (a *App) provisioner() (*nats.Conn, func(), error) {
	if a.prov == a.conn {
		return a.nc, func() {}, nil
	}
	po := a.prov
	po.URL, po.Name, po.Logger = a.url(), "platform-provision", a.log
	nc, err := natsconn.Connect(po)
	if err != nil {
		return nil, nil, err
	}
	return nc, nc.Close, nil
}

// restore restores the backup chain of --restore-from into the cluster,
// before the streams are provisioned and any service starts, so no
// service ever runs on an empty platform that the restore then swaps out.
func (a *App) restore(ctx context.Context) error {
	t := time.Now()
	nc, closeNC, err := a.provisioner()
	if err != nil {
		return fmt.Errorf("--restore-from: %w", err)
	}
	defer closeNC()
	res, err := backup.Restore(ctx, nc, a.opts.RestoreFrom, backup.RestoreOptions{
		Replicas: a.replicaCount(), Logger: a.log.With("component", "restore"),
	})
	if err != nil {
		return fmt.Errorf("--restore-from %s: %w (the data directory now holds a partial restore: empty it before trying again)", a.opts.RestoreFrom, err)
	}
	a.log.Info("restored", "component", "restore", "from", a.opts.RestoreFrom, "streams", res.Streams,
		"snapshot_messages", res.Snapshot, "replayed", res.Replayed, "took", time.Since(t).Round(time.Millisecond))
	return nil
}

func (a *App) ensureStreams(ctx context.Context) error {
	a.replicas = a.replicaCount()
	// Right after a whole-cluster restart this waits for the meta leader
	// and the streams' leaders; say so now and then, not on every attempt.
	logEvery := rate.Sometimes{First: 1, Interval: 10 * time.Second}
	nc, closeNC, err := a.provisioner()
	if err != nil {
		return fmt.Errorf("provision streams: %w", err)
	}
	defer closeNC()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("provision streams: %w", err)
	}
	results, err := streams.Provision(ctx, js, streams.All(a.replicas), func(err error, wait time.Duration) {
		a.setPhase(fmt.Errorf("provisioning streams: %w", err))
		logEvery.Do(func() {
			a.log.Warn("waiting for JetStream to provision the streams", "component", "streams", "err", err, "retry_in", wait.Round(time.Millisecond))
		})
	})
	if err != nil {
		return err
	}
	for _, r := range results {
		a.log.Debug("stream provisioned", "component", "streams", "stream", r.Stream, "action", r.Action)
	}
	a.log.Info("streams ready", "component", "streams", "count", len(results), "replicas", a.replicas, "changed", changed(results))
	return nil
}

func changed(rs []streams.Result) []string {
	var out []string
	for _, r := range rs {
		if r.Action != streams.Unchanged {
			out = append(out, r.Stream+":"+string(r.Action))
		}
	}
	return out
}

// serviceStartWait is how long startServices waits for one service to be
// ready before it starts the next anyway: start order is kept while the
// cluster is healthy, and one service waiting for JetStream does not hold
// its siblings back.
const serviceStartWait = 10 * time.Second

// startServices builds every selected service (a constructor's error is a
// configuration error and stops the process), then starts each under a
// supervisor, in order.
func (a *App) startServices(ctx, svcCtx context.Context, wg *sync.WaitGroup) error {
	deps := Deps{
		Conn: a.nc, JS: a.js, Logger: a.log, Registerer: a.opts.Registry,
		HeartbeatInterval: a.opts.HeartbeatInterval, Cluster: a.cluster,
		Authenticated: a.conn.NkeySeed != "" || a.conn.Creds != "" || a.conn.User != "",
	}
	runners := make([]Runner, len(a.selected))
	for i, svc := range a.selected {
		r, err := svc.New(deps)
		if err != nil {
			return fmt.Errorf("service %s: %w", svc.Name, err)
		}
		runners[i] = r
	}
	restarts := newRestartsMetric(a.opts.Registry)
	for i, svc := range a.selected {
		s := newSupervisor(svc, deps, restarts)
		a.mu.Lock()
		a.sups = append(a.sups, s)
		a.mu.Unlock()
		wg.Go(func() { s.run(svcCtx, runners[i]) })
		select {
		case <-s.firstReady:
		case <-ctx.Done():
			return nil
		case <-time.After(serviceStartWait):
			a.log.Warn("service not ready yet, starting the next ones", "component", svc.Name, "waiting_for", s.status())
		}
	}
	return nil
}

func (a *App) serveHTTP() error {
	l, err := net.Listen("tcp", a.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http %s is not available: %w", a.opts.HTTPAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.opts.Registry, promhttp.HandlerOpts{Registry: a.opts.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.checkReady(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	paths := "/metrics /healthz /readyz"
	if !a.opts.NoConsole {
		c, err := a.newConsole()
		if err != nil {
			return err
		}
		mux.Handle("/", c)
		paths += " / (console)"
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server failed", "component", "http", "err", err)
		}
	}()
	a.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), a.opts.StopTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	a.mu.Lock()
	a.httpAddr = l.Addr().String()
	a.mu.Unlock()
	a.log.Info("http ready", "component", "http", "addr", a.httpAddr, "paths", paths)
	return nil
}
