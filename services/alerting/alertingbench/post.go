package alertingbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/alerting"
)

// PostOptions size the POST /api/v2/alerts benchmark.
type PostOptions struct {
	// Alerts is the number of distinct alerts posted (default 50,000).
	Alerts int
	// Batch is the number of alerts per POST (default 100).
	Batch int
	// Clients post concurrently (default 4).
	Clients int
	// Alertmanager is the path of an Alertmanager binary to measure side
	// by side ("" looks for prometheus-alertmanager and alertmanager; none
	// found: no baseline row).
	Alertmanager string
	// Progress is called once per batch posted (nil: none).
	Progress func()
	// Logger receives the alerting instance's logs (default: discarded).
	Logger *slog.Logger
}

func (o *PostOptions) setDefaults() {
	if o.Alerts <= 0 {
		o.Alerts = 50000
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Clients <= 0 {
		o.Clients = 4
	}
	if o.Progress == nil {
		o.Progress = func() {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// FindAlertmanager returns the path of an installed Alertmanager, or "".
func FindAlertmanager() string {
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// batches returns the request bodies: o.Alerts distinct alerts, as
// Prometheus posts them, o.Batch per body.
func batches(o PostOptions) ([][]byte, error) {
	now := time.Now().UTC()
	var out [][]byte
	for i := 0; i < o.Alerts; i += o.Batch {
		var as []alerting.PostableAlert
		for k := i; k < min(i+o.Batch, o.Alerts); k++ {
			as = append(as, alerting.PostableAlert{
				Labels: map[string]string{"alertname": fmt.Sprintf("Bench%03d", k%100), "instance": fmt.Sprintf("i%06d", k),
					"job": "bench", "severity": "warning"},
				Annotations:  map[string]string{"summary": fmt.Sprintf("instance i%06d is slow", k)},
				StartsAt:     now,
				EndsAt:       now.Add(time.Hour),
				GeneratorURL: "http://prometheus.example/graph",
			})
		}
		b, err := json.Marshal(as)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// postAll posts every body to url from clients goroutines, recording each
// POST's latency, and returns the time taken.
func postAll(ctx context.Context, url string, bodies [][]byte, clients int, lat *bench.Latencies, progress func()) (time.Duration, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	start := time.Now()
	err := parallel(len(bodies), clients, func(i int) error {
		t0 := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("post %s: %s: %s", url, resp.Status, msg)
		}
		lat.Add(time.Since(t0))
		progress()
		return nil
	})
	return time.Since(start), err
}

// MeasurePost posts the same batches to the platform's POST
// /api/v2/alerts and, when one is installed, to a real Alertmanager on the
// same machine. The platform's row ends when every alert is held by the
// engine (a POST is answered once the alerts are handed on to every
// instance); Alertmanager's when every POST is answered (it stores before
// answering).
func MeasurePost(ctx context.Context, t *target.Target, o PostOptions) ([]bench.Result, error) {
	o.setDefaults()
	bodies, err := batches(o)
	if err != nil {
		return nil, err
	}
	var out []bench.Result

	nc, err := t.Connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	dir, err := os.MkdirTemp("", "alerting-post-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rules := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(rules, []byte("rules: []\nroute: {group_by: [alertname]}\n"), 0o600); err != nil {
		return nil, err
	}
	svc, err := alerting.New(alerting.Options{Conn: nc, RulesFile: rules, HTTPAddr: "127.0.0.1:0", HeartbeatInterval: -1, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = svc.Run(sctx) }()
	select {
	case <-svc.Ready():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var lat bench.Latencies
	start := time.Now()
	if _, err := postAll(ctx, "http://"+svc.HTTPAddr()+"/api/v2/alerts", bodies, o.Clients, &lat, o.Progress); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, time.Minute, func() bool { return svc.Engine().PostedAlerts() >= o.Alerts }); err != nil {
		return nil, fmt.Errorf("posted alerts not all held: %d of %d: %w", svc.Engine().PostedAlerts(), o.Alerts, err)
	}
	ours := bench.Result{Name: "alerting POST /api/v2/alerts (platform)"}
	ours.Finish(int64(o.Alerts), time.Since(start), &lat)
	ours.Extra = map[string]float64{"batch": float64(o.Batch), "clients": float64(o.Clients)}
	out = append(out, ours)

	bin := o.Alertmanager
	if bin == "" {
		bin = FindAlertmanager()
	}
	if bin == "" {
		return out, nil
	}
	amURL, stopAM, err := startAlertmanager(ctx, bin, dir)
	if err != nil {
		return out, err
	}
	defer stopAM()
	var amLat bench.Latencies
	took, err := postAll(ctx, amURL+"/api/v2/alerts", bodies, o.Clients, &amLat, o.Progress)
	if err != nil {
		return out, err
	}
	am := bench.Result{Name: "alerting POST /api/v2/alerts (Alertmanager)"}
	am.Finish(int64(o.Alerts), took, &amLat)
	am.Extra = map[string]float64{"batch": float64(o.Batch), "clients": float64(o.Clients)}
	out = append(out, am)
	if am.EventsPerSec > 0 {
		out[0].Extra["x_alertmanager"] = ours.EventsPerSec / am.EventsPerSec
	}
	return out, nil
}

// startAlertmanager runs bin on a free loopback port with a receiver that
// sends nothing and returns its URL once ready.
func startAlertmanager(ctx context.Context, bin, dir string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := filepath.Join(dir, "am.yml")
	if err := os.WriteFile(cfg, []byte("route: {receiver: \"null\", group_by: [alertname]}\nreceivers: [{name: \"null\"}]\n"), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--cluster.listen-address=")
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start alertmanager: %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	err = waitFor(ctx, 30*time.Second, func() bool {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		stop()
		return "", nil, errors.Join(errors.New("alertmanager not ready"), err)
	}
	return url, stop, nil
}
