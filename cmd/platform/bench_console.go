package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/platform/platform/cluster"
	"github.com/platform/platform/streams"
)

func newBenchConsoleCmd() *cobra.Command {
	var (
		duration time.Duration
		events   int
	)
	cmd := &cobra.Command{
		Use:   "console",
		Short: "CPU an open console costs the platform, and the API's answer times with many events",
		Long: `Start "platform run" as a child process (3 nodes, free loopback ports,
temporary storage), let it idle for --duration and read its CPU time
(utime+stime, what getrusage reports for it) from /proc, then poll the
console's API as an open overview page does (overview and series each
second, a live tail open) for --duration and read it again. The difference
is what the open console costs, as a share of one core.

With --events N it first stores N events in one topic and times the
events pages an operator opens first: the newest page, the oldest page and
a text search.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchConsole(cmd.Context(), cmd.OutOrStdout(), duration, events)
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", time.Minute, "length of the idle run and of the polled run")
	cmd.Flags().IntVar(&events, "events", 0, "events to store in topic bench before timing its pages")
	return cmd
}

func benchConsole(ctx context.Context, out io.Writer, d time.Duration, events int) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "platform-bench-console-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	client, err := cluster.FreePorts("127.0.0.1", 3)
	if err != nil {
		return err
	}
	route, err := cluster.FreePorts("127.0.0.1", 3)
	if err != nil {
		return err
	}
	web, err := cluster.FreePorts("127.0.0.1", 1)
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", web)
	logf, err := os.Create(filepath.Join(dir, "platform.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	c := exec.Command(bin, "run", "--data-dir", filepath.Join(dir, "data"), "--client-port", strconv.Itoa(client),
		"--cluster-port", strconv.Itoa(route), "--http", fmt.Sprintf("127.0.0.1:%d", web), "--log-level", "warn")
	c.Stdout, c.Stderr, c.SysProcAttr = logf, logf, childAttr()
	if err := c.Start(); err != nil {
		return err
	}
	defer func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
		}
	}()
	fmt.Fprintf(out, "platform run (pid %d), console on %s; waiting for /readyz\n", c.Process.Pid, base)
	if err := waitReady(ctx, base+"/readyz", 2*time.Minute); err != nil {
		return fmt.Errorf("%w (log: %s)", err, logf.Name())
	}
	if events > 0 {
		if err := timePages(ctx, out, fmt.Sprintf("nats://127.0.0.1:%d", client), base, events); err != nil {
			return err
		}
	}
	// Let start-up work (elections, first records) settle.
	if err := sleepCtx(ctx, 5*time.Second); err != nil {
		return err
	}
	idle, err := cpuDuring(ctx, c.Process.Pid, d, nil)
	if err != nil {
		return err
	}
	polls := 0
	polled, err := cpuDuring(ctx, c.Process.Pid, d, func(ctx context.Context) {
		openPage(ctx, base, &polls)
	})
	if err != nil {
		return err
	}
	cost := (polled - idle).Seconds() / d.Seconds() * 100
	fmt.Fprintf(out, "idle run:   %6.2f CPU s in %s (%.2f%% of a core)\n", idle.Seconds(), d, idle.Seconds()/d.Seconds()*100)
	fmt.Fprintf(out, "polled run: %6.2f CPU s in %s (%.2f%% of a core), %d API requests and one live tail\n", polled.Seconds(), d, polled.Seconds()/d.Seconds()*100, polls)
	fmt.Fprintf(out, "open console costs %.2f%% of a core (budget: 2%%)\n", cost)
	return nil
}

// openPage polls what the overview page polls until ctx ends: the
// overview and the new series points each second, with a live tail open.
func openPage(ctx context.Context, base string, polls *int) {
	api := base + "/console/api/"
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"events/tail", nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	var since int64
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		_ = getJSON(ctx, api+"overview", nil)
		var s struct{ Times []int64 }
		if getJSON(ctx, api+"series?since="+strconv.FormatInt(since, 10), &s) == nil && len(s.Times) > 0 {
			since = s.Times[len(s.Times)-1]
		}
		*polls += 2
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cpuDuring returns the CPU time pid used during d while work runs.
func cpuDuring(ctx context.Context, pid int, d time.Duration, work func(context.Context)) (time.Duration, error) {
	before, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if work != nil {
			work(wctx)
		} else {
			<-wctx.Done()
		}
	}()
	<-done
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	after, err := procCPU(pid)
	return after - before, err
}

// procCPU reads utime+stime of pid from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read the platform's CPU time (Linux /proc only): %w", err)
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// timePages stores n events in topic bench and times the pages an
// operator opens first.
func timePages(ctx context.Context, out io.Writer, url, base string, n int) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	start := time.Now()
	for i := range n {
		if _, err := js.PublishAsync(streams.EventSubject("bench"), fmt.Appendf(nil, `{"i":%d,"pad":"console paging benchmark"}`, i)); err != nil {
			return err
		}
		if i%2000 == 1999 || i == n-1 { // bounded in flight
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	fmt.Fprintf(out, "stored %d events in topic bench in %s\n", n, time.Since(start).Round(time.Millisecond))
	api := base + "/console/api/"
	for _, p := range []struct{ name, path string }{
		{"newest page (100)", "events?topic=bench"},
		{"oldest page (100)", "events?topic=bench&after=0"},
		{"middle page (100)", fmt.Sprintf("events?topic=bench&before=%d", n/2)},
		{"text search, newest first", "events?topic=bench&q=%22i%22:" + strconv.Itoa(n-50) + "%2C"},
		{"members page (100)", "members?sort=phi&order=desc"},
		{"overview", "overview"},
	} {
		var best time.Duration
		for i := range 5 {
			t := time.Now()
			if err := getJSON(ctx, api+p.path, nil); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			if d := time.Since(t); i == 0 || d < best {
				best = d
			}
		}
		fmt.Fprintf(out, "%-28s %8.1f ms (best of 5)\n", p.name, float64(best.Microseconds())/1000)
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(bufio.NewReader(io.LimitReader(resp.Body, 512)))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitReady(ctx context.Context, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not ready within %s", url, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
