package console_test

// The console in a real browser: headless Chromium (Debian's chromium
// package; the tests skip without it) drives the embedded pages against a
// real 3-node platform, and every check reads what the page shows and what
// the platform says (admin.status, KV MEMBERS and WEIGHTS, alerts.list,
// KV SILENCES), never a stand-in.
//
// CONSOLE_SCREENSHOTS=<dir> (make screenshots) saves a full-page PNG of
// each page there.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/auth"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/console"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// firstPaintBudget is the bound on a page's first paint with data.
const firstPaintBudget = 300 * time.Millisecond

// chromium finds a Chromium binary: $CHROMIUM, else the usual names on
// PATH. The browser tests skip, saying so, without one.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary on PATH (apt-get install chromium, or set CHROMIUM): the console's browser tests skip")
	return ""
}

// browserPlatform is a running 3-node platform with the console on its HTTP
// listener, a client connection, and one headless browser.
type browserPlatform struct {
	app     *app.App
	base    string // http://127.0.0.1:port
	nc      *nats.Conn
	js      jetstream.JetStream
	browser context.Context
	shots   string
}

func startBrowserPlatform(t *testing.T) *browserPlatform {
	t.Helper()
	exe := chromium(t)
	opts := app.Options{
		Cluster: cluster.Options{
			Nodes: 3, DataDir: t.TempDir(),
			ClientPort:  clustertest.FreePortRange(t, 3),
			ClusterPort: clustertest.FreePortRange(t, 3),
		},
		HTTPAddr:          "127.0.0.1:0",
		HeartbeatInterval: 200 * time.Millisecond,
		Logger:            clustertest.Logger(),
	}
	a, err := app.New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "platform run")
		case <-time.After(60 * time.Second):
			t.Error("platform did not stop within 60s")
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("platform stopped before ready: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("platform not ready within 90s")
	}
	p := &browserPlatform{app: a, base: "http://" + a.HTTPAddr(), shots: os.Getenv("CONSOLE_SCREENSHOTS")}
	p.nc, err = nats.Connect(strings.Join(a.Cluster().ClientURLs(), ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(p.nc.Close)
	p.js, err = jetstream.New(p.nc)
	require.NoError(t, err)

	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1440, 900), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true))
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() { bcancel(); acancel() })
	// The first Run starts the browser.
	_, err = chromedp.Run(bctx, chromedp.Evaluate[int](`1`))
	require.NoError(t, err, "start chromium %s", exe)
	p.browser = bctx
	return p
}

// tab is one browser tab whose page errors are collected: uncaught
// exceptions, unhandled rejections and console.error calls.
type tab struct {
	ctx  context.Context
	mu   sync.Mutex
	errs []string
}

func (p *browserPlatform) tab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(p.browser)
	t.Cleanup(cancel)
	tb := &tab{ctx: ctx}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil {
				text += " " + d.Exception.Description
			}
			tb.add(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					if len(a.Value) > 0 {
						parts = append(parts, string(a.Value))
					} else {
						parts = append(parts, a.Description)
					}
				}
				tb.add("console." + string(ev.Type) + ": " + strings.Join(parts, " "))
			}
		}
	}))
	return tb
}

func (tb *tab) add(s string) {
	tb.mu.Lock()
	tb.errs = append(tb.errs, s)
	tb.mu.Unlock()
}

// noErrors fails the test with every page error seen so far.
func (tb *tab) noErrors(t *testing.T, page string) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.errs) > 0 {
		t.Errorf("page %s: %d errors in the browser:\n%s", page, len(tb.errs), strings.Join(tb.errs, "\n"))
		tb.errs = nil
	}
}

// open loads the console at route as a fresh document (so its
// Performance timeline starts at this load) and waits until the page has
// painted data from the API.
func (tb *tab) open(t *testing.T, p *browserPlatform, route string) {
	t.Helper()
	require.NoError(t, chromedp.Do(tb.ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(p.base+"/#"+route)), "open %s", route)
	tb.wait(t, `performance.getEntriesByName('console:painted').length > 0`, 15*time.Second, "page "+route+" painted data")
}

// openMeasured opens route as open does, with every element that matches
// cells marked for the browser's Element Timing API as the page adds it,
// so that paint can report when the browser presented the first of them.
func (tb *tab) openMeasured(t *testing.T, p *browserPlatform, route, cells string) {
	t.Helper()
	sel, err := json.Marshal(cells)
	require.NoError(t, err)
	res, err := chromedp.Call(tb.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `(() => {
		const sel = ` + string(sel) + `;
		const mark = (n) => {
			if (n.nodeType !== 1) return;
			if (n.matches(sel)) n.setAttribute('elementtiming', 'data');
			for (const e of n.querySelectorAll(sel)) e.setAttribute('elementtiming', 'data');
		};
		new MutationObserver((ms) => { for (const m of ms) m.addedNodes.forEach(mark); })
			.observe(document, { childList: true, subtree: true });
	})()`})
	require.NoError(t, err, "install the element timing marker")
	defer func() {
		_, err := chromedp.Call(tb.ctx, page.RemoveScriptToEvaluateOnNewDocument, page.RemoveScriptToEvaluateOnNewDocumentParams(res))
		require.NoError(t, err)
	}()
	tb.open(t, p, route)
}

// wait polls a JavaScript expression in the page until it is truthy.
func (tb *tab) wait(t *testing.T, expr string, d time.Duration, what string) {
	t.Helper()
	if err := tb.poll(expr, d); err != nil {
		t.Fatalf("waiting %s for %s (%s): %v", d, what, expr, err)
	}
}

func (tb *tab) poll(expr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, time.Until(deadline)+5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(25*time.Millisecond)))
		cancel()
		// A navigation that was still settling replaces the document the
		// poll ran in ("Cannot find context with specified id"): poll the
		// new one.
		if err == nil || !strings.Contains(err.Error(), "Cannot find context") || time.Now().After(deadline) {
			return err
		}
	}
}

// eval evaluates a JavaScript expression in the page into a T.
func eval[T any](t *testing.T, tb *tab, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, "evaluate %s", expr)
	return v
}

// paint is what the Performance API says of one page load, in ms from
// navigation start: first contentful paint and the first frame painted
// with the API's data.
type paint struct {
	FCP  float64 `json:"fcp"`
	Data float64 `json:"data"`
	// Shown is when the browser presented the first element openMeasured
	// marked (Element Timing's renderTime), -1 without one.
	Shown float64 `json:"shown"`
}

func (tb *tab) paint(t *testing.T) paint {
	t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[paint](`new Promise((resolve) => {
		const f = performance.getEntriesByName('first-contentful-paint')[0];
		const d = performance.getEntriesByName('console:painted')[0];
		const out = {fcp: f ? f.startTime : -1, data: d ? d.startTime : -1, shown: -1};
		const seen = (list) => {
			for (const e of list.getEntries()) {
				const at = e.renderTime || e.loadTime;
				if (e.identifier === 'data' && (out.shown < 0 || at < out.shown)) out.shown = at;
			}
		};
		// Entries arrive after the frame is presented, on a busy machine
		// a while after: wait for one, 3 s at most (pages loaded with open
		// mark nothing, and have none).
		const marked = document.querySelector('[elementtiming]');
		const done = () => { if (out.fcp >= 0 && (out.shown >= 0 || !marked)) resolve(out); };
		new PerformanceObserver((list) => { seen(list); done(); }).observe({type: 'element', buffered: true});
		new PerformanceObserver((list) => {
			for (const e of list.getEntries()) if (e.name === 'first-contentful-paint') out.fcp = e.startTime;
			done();
		}).observe({type: 'paint', buffered: true});
		done();
		setTimeout(() => resolve(out), 3000);
	})`, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "read the Performance API")
	return v
}

// timeline is where one page load spent its time, in ms from navigation
// start as the browser reports it: the document's request and response,
// the parse, each fetched file's end, and the paints.
func (tb *tab) timeline(t *testing.T) string {
	t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`new Promise((resolve) => {
		const r = (x) => Math.round(x);
		const n = performance.getEntriesByType('navigation')[0];
		const out = ['doc ' + r(n.requestStart) + '→' + r(n.responseEnd) + ' (' + n.transferSize + ' B)',
			'interactive ' + r(n.domInteractive), 'DOMContentLoaded ' + r(n.domContentLoadedEventEnd)];
		for (const e of performance.getEntriesByType('resource')) {
			const u = new URL(e.name);
			out.push(u.pathname.replace(/^\/console\/api\//, 'api:') + ' ' + r(e.startTime) + '→' + r(e.responseEnd) + ' (' + e.transferSize + ' B)');
		}
		for (const e of performance.getEntriesByType('paint')) out.push(e.name + ' ' + r(e.startTime));
		for (const m of performance.getEntriesByType('mark')) out.push(m.name.replace(/^console:/, '') + ' ' + r(m.startTime));
		// Frames that kept the page's thread over 50 ms: when each began,
		// its script time, and when it began style and layout and ended.
		new PerformanceObserver((list) => {
			for (const f of list.getEntries()) {
				if (f.startTime > 3000) continue;
				const js = f.scripts.reduce((a, s) => a + s.duration, 0);
				out.push('long frame ' + r(f.startTime) + '→' + r(f.startTime + f.duration) + ' (script ' + r(js) + ', render ' + r(f.renderStart) + ', style/layout ' + r(f.styleAndLayoutStart) + ')');
			}
		}).observe({type: 'long-animation-frame', buffered: true});
		setTimeout(() => resolve(out.join(', ')), 50);
	})`, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "read the Performance API")
	return v
}

// screenshot saves a full-page PNG when CONSOLE_SCREENSHOTS is set.
func (tb *tab) screenshot(t *testing.T, p *browserPlatform, name string) {
	t.Helper()
	if p.shots == "" {
		return
	}
	require.NoError(t, os.MkdirAll(p.shots, 0o755))
	// Let the charts and tables settle for one more poll.
	time.Sleep(1200 * time.Millisecond)
	b, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	path := filepath.Join(p.shots, "console-"+name+".png")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	t.Logf("wrote %s", path)
}

func request[T any](t *testing.T, nc *nats.Conn, subject string, body any) T {
	t.Helper()
	var data []byte
	if body != nil {
		var err error
		data, err = json.Marshal(body)
		require.NoError(t, err)
	}
	msg, err := nc.Request(subject, data, 5*time.Second)
	require.NoError(t, err, "request %s", subject)
	var v T
	require.NoError(t, json.Unmarshal(msg.Data, &v), "decode %s answer: %s", subject, msg.Data)
	return v
}

// alertStatus is what alerts.list says of one alert.
type alertStatus struct {
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels"`
	Status      struct {
		State      string   `json:"state"`
		SilencedBy []string `json:"silencedBy"`
	} `json:"status"`
}

func TestConsoleInBrowser(t *testing.T) {
	p := startBrowserPlatform(t)
	tb := p.tab(t)

	// Some events to browse, sent as a user would (nats req ingest.<topic>).
	for i := range 5 {
		request[map[string]any](t, p.nc, streams.IngestSubject("orders.eu"), map[string]any{"order": i, "amount": 10 + i})
	}

	t.Run("every page loads without an error", func(t *testing.T) {
		// One load first, unmeasured: a cold browser's first document
		// pays for starting its renderer, which no operator sees twice.
		tb.open(t, p, "/overview")
		for _, pg := range []struct{ route, ready, cells string }{
			{"/overview", `document.querySelector('#streams tbody tr') && document.querySelector('#nodes tbody tr')`, "#streams tbody td"},
			{"/events?topic=orders.eu", `document.querySelectorAll('#ev-table tbody tr').length >= 5`, "#ev-table tbody td"},
			{"/members", `document.querySelector('#members-table tbody tr')`, "#members-table tbody td"},
			{"/balancer", `document.querySelector('#balancer-table tbody tr')`, "#balancer-table tbody td"},
			{"/alerts", `document.querySelector('#a-n-firing')`, ".counts, .bar"},
			{"/state", `document.querySelector('#st-list h2')`, "#st-list h2"},
			{"/groups", `document.querySelector('#groups-none, #groups [data-group]')`, "#groups-none, #groups [data-group] h2"},
		} {
			tb.openMeasured(t, p, pg.route, pg.cells)
			tb.wait(t, pg.ready, 15*time.Second, pg.route+" shows its data")
			pt := tb.paint(t)
			t.Logf("%-24s first contentful paint %6.1f ms, first paint with data %6.1f ms, presented %6.1f ms", pg.route, pt.FCP, pt.Data, pt.Shown)
			// The budget is reported, not asserted: on a machine shared with
			// other builds even the static shell's first paint can pass it.
			// What fails the test is a page that never paints its data.
			if over := time.Duration(pt.Data * float64(time.Millisecond)); pt.Data < 0 || over > 10*firstPaintBudget {
				t.Errorf("%s: first paint with data at %.1f ms, want under %s (and never over ten times that)", pg.route, pt.Data, firstPaintBudget)
			} else if over > firstPaintBudget {
				t.Logf("%s: over the %s budget on this run", pg.route, firstPaintBudget)
			}
			name := strings.TrimPrefix(strings.SplitN(pg.route, "?", 2)[0], "/")
			if slices.Contains([]string{"overview", "events", "members", "balancer"}, name) {
				// first.js asked for the page's data before the document
				// was parsed, and the page took that answer instead of
				// asking again.
				v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[map[string]any](`(() => {
					const n = performance.getEntriesByType('navigation')[0];
					const rs = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname === '/console/api/`+name+`');
					return {early: rs.length > 0 && rs[0].startTime < n.domInteractive, first: rs.length ? rs[0].startTime : -1,
						parsed: n.domInteractive, asked: rs.filter((e) => e.startTime < 800).length};
				})()`))
				require.NoError(t, err)
				require.Equal(t, true, v["early"], "%s: the page's data was asked for before the document was parsed: %v", pg.route, v)
				require.EqualValues(t, 1, v["asked"], "%s: the page took first.js's answer and did not ask again: %v", pg.route, v)
			}
			if name == "events" {
				// Open one event: headers and the pretty-printed body.
				require.NoError(t, chromedp.Do(tb.ctx, chromedp.Click(chromedp.CSS(`#ev-table tbody tr`))))
				tb.wait(t, `document.querySelector('#ev-body') && document.querySelector('#ev-body').textContent.includes('"amount"')`, 5*time.Second, "the event's body")
			}
			tb.screenshot(t, p, name)
			tb.noErrors(t, pg.route)
		}
	})

	t.Run("overview matches admin.status", func(t *testing.T) {
		tb.open(t, p, "/overview")
		type shown struct {
			MetaLeader string   `json:"meta"`
			Nodes      []string `json:"nodes"`
			Streams    []string `json:"streams"`
		}
		var last, want shown
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := request[admin.Status](t, p.nc, streams.AdminStatusSubject, nil)
			want = shown{MetaLeader: st.MetaLeader}
			for _, n := range st.Nodes {
				want.Nodes = append(want.Nodes, fmt.Sprintf("%s:%v", n.Name, n.Running))
			}
			for _, s := range st.Streams {
				want.Streams = append(want.Streams, fmt.Sprintf("%s:R%d", s.Name, s.Replicas))
			}
			sort.Strings(want.Nodes)
			sort.Strings(want.Streams)
			last = eval[shown](t, tb, `(() => ({
				meta: document.querySelector('#meta-leader').textContent,
				nodes: [...document.querySelectorAll('#nodes tr[data-node]')].map(r => r.dataset.node + ':' + r.dataset.running).sort(),
				streams: [...document.querySelectorAll('#streams tr[data-stream]')].map(r => r.dataset.stream + ':R' + r.querySelector('[data-k=replicas]').textContent).sort(),
			}))()`)
			if fmt.Sprint(last) == fmt.Sprint(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if fmt.Sprint(last) != fmt.Sprint(want) {
			t.Errorf("overview shows %+v, admin.status says %+v", last, want)
		}
		tb.noErrors(t, "overview")
	})

	t.Run("members match KV MEMBERS", func(t *testing.T) {
		kv, err := p.js.KeyValue(context.Background(), streams.BucketMembers)
		require.NoError(t, err)
		tb.open(t, p, "/members")
		matchEventually(t, 10*time.Second, func() (string, string) {
			want := map[string]string{}
			keys, err := kv.ListKeys(context.Background())
			require.NoError(t, err)
			for k := range keys.Keys() {
				e, err := kv.Get(context.Background(), k)
				if err != nil {
					continue
				}
				m, err := membership.Decode(k, e.Value())
				if err == nil {
					want[k] = string(m.State)
				}
			}
			got := eval[map[string]string](t, tb, `Object.fromEntries([...document.querySelectorAll('#members-table tr[data-key]')].map(r => [r.dataset.key, r.querySelector('[data-k=state]').textContent]))`)
			total := eval[string](t, tb, `document.querySelector('#m-total').textContent`)
			got["total"], want["total"] = total, fmt.Sprint(len(want))
			return fmt.Sprint(got), fmt.Sprint(want)
		})
		tb.noErrors(t, "members")
	})

	t.Run("balancer matches KV WEIGHTS", func(t *testing.T) {
		kv, err := p.js.KeyValue(context.Background(), streams.BucketWeights)
		require.NoError(t, err)
		tb.open(t, p, "/balancer")
		matchEventually(t, 10*time.Second, func() (string, string) {
			want := map[string]string{}
			keys, err := kv.ListKeys(context.Background())
			require.NoError(t, err)
			for k := range keys.Keys() {
				e, err := kv.Get(context.Background(), k)
				if err != nil {
					continue
				}
				var r balancer.Record
				if json.Unmarshal(e.Value(), &r) == nil {
					// The page shows at most 3 decimals (Intl.NumberFormat).
					want[r.Instance] = strconv.FormatFloat(math.Round(r.Weight*1000)/1000, 'f', -1, 64) + "/" + r.Reason
				}
			}
			got := eval[map[string]string](t, tb, `Object.fromEntries([...document.querySelectorAll('#balancer tr[data-instance]')].map(r => [r.dataset.instance, r.querySelector('[data-k=weight]').textContent.replace(/,/g, '') + '/' + r.querySelector('[data-k=reason]').textContent]))`)
			return fmt.Sprint(got), fmt.Sprint(want)
		})
		tb.noErrors(t, "balancer")
	})

	t.Run("an event sent with nats req appears in the live tail within 2s", func(t *testing.T) {
		tb.open(t, p, "/events?tail=1")
		tb.wait(t, `document.querySelector('.live-dot.on')`, 10*time.Second, "the live tail connected")
		marker := fmt.Sprintf("tail-%d", time.Now().UnixNano())
		sent := time.Now()
		request[map[string]any](t, p.nc, streams.IngestSubject("console.tail"), map[string]any{"marker": marker})
		expr := fmt.Sprintf(`[...document.querySelectorAll('#tail-table tbody tr')].some(r => r.textContent.includes(%q))`, marker)
		if err := tb.poll(expr, 2*time.Second); err != nil {
			t.Fatalf("event %s not in the live tail within 2s of its request: %v", marker, err)
		}
		t.Logf("event in the live tail %s after its request was sent", time.Since(sent).Round(time.Millisecond))
		tb.screenshot(t, p, "events-tail")
		tb.noErrors(t, "events tail")
	})

	t.Run("a silence created in the page is in KV SILENCES and mutes its alert", func(t *testing.T) {
		name := "ConsoleBrowserTest"
		request[map[string]any](t, p.nc, streams.AlertsPostSubject, []map[string]any{{
			"labels":      map[string]string{"alertname": name, "severity": "warning", "service": "console"},
			"annotations": map[string]string{"summary": "posted by the console's browser test"},
		}})
		tb.open(t, p, "/alerts")
		tb.wait(t, fmt.Sprintf(`document.querySelector('#alerts-table tr[data-alertname=%q][data-state=active]')`, name), 10*time.Second, "the posted alert firing on the page")
		alertsMatch(t, p, tb)
		tb.screenshot(t, p, "alerts")

		require.NoError(t, chromedp.Do(tb.ctx,
			chromedp.SetValue(chromedp.CSS(`#s-matchers`), fmt.Sprintf(`alertname=%q, severity=~"warn.*"`, name)),
			chromedp.SetValue(chromedp.CSS(`#s-duration`), "1h"),
			chromedp.SetValue(chromedp.CSS(`#s-comment`), "browser test"),
			chromedp.Click(chromedp.CSS(`#s-create`))))
		tb.wait(t, `document.querySelector('#s-created')`, 10*time.Second, "the page saying the silence was created")
		id := eval[string](t, tb, `document.querySelector('#s-created').dataset.id`)

		kv, err := p.js.KeyValue(context.Background(), streams.BucketSilences)
		require.NoError(t, err)
		_, err = kv.Get(context.Background(), id)
		require.NoError(t, err, "silence %s in KV SILENCES", id)

		deadline := time.Now().Add(10 * time.Second)
		for {
			var muted bool
			for _, a := range request[[]alertStatus](t, p.nc, streams.AlertsListSubject, nil) {
				if a.Labels["alertname"] == name && a.Status.State == "suppressed" && slices.Contains(a.Status.SilencedBy, id) {
					muted = true
				}
			}
			if muted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alerts.list does not show %s silenced by %s within 10s", name, id)
			}
			time.Sleep(100 * time.Millisecond)
		}
		tb.wait(t, fmt.Sprintf(`document.querySelector('#alerts-table tr[data-alertname=%q][data-state=suppressed]')`, name), 5*time.Second, "the page showing the alert silenced")
		tb.wait(t, fmt.Sprintf(`document.querySelector('#silences-table tr[data-silence=%q][data-state=active]')`, id), 5*time.Second, "the silence listed as active")
		alertsMatch(t, p, tb)

		// Expire it from the page.
		require.NoError(t, chromedp.Do(tb.ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-expire=%q]`, id)))))
		tb.wait(t, fmt.Sprintf(`document.querySelector('#silences-table tr[data-silence=%q][data-state=expired]')`, id), 10*time.Second, "the silence expired")
		tb.noErrors(t, "alerts")
	})

	t.Run("the reader role cannot create a silence", func(t *testing.T) {
		base := authConsole(t, p)
		rt := p.tab(t)
		require.NoError(t, chromedp.Do(rt.ctx, chromedp.Navigate(base+"/#/alerts")))
		rt.wait(t, `document.querySelector('#login')`, 10*time.Second, "the login page")
		require.NoError(t, chromedp.Do(rt.ctx,
			chromedp.SetValue(chromedp.CSS(`#login input[name=user]`), "rita"),
			chromedp.SetValue(chromedp.CSS(`#login input[name=password]`), "reader-secret"),
			chromedp.Click(chromedp.CSS(`#login button[type=submit]`))))
		rt.wait(t, `document.querySelector('#a-n-firing')`, 10*time.Second, "the alerts page after login")
		require.True(t, eval[bool](t, rt, `document.querySelector('#silence-form').hidden`), "a reader sees no silence form")
		// Show the form anyway and submit it: the server must refuse.
		require.NoError(t, chromedp.Do(rt.ctx,
			chromedp.Evaluate[chromedp.Void](`document.querySelector('#silence-form').hidden = false, undefined`),
			chromedp.SetValue(chromedp.CSS(`#s-matchers`), `alertname="ReaderTry"`),
			chromedp.SetValue(chromedp.CSS(`#s-comment`), "a reader tries"),
			chromedp.Click(chromedp.CSS(`#s-create`))))
		rt.wait(t, `document.querySelector('#s-msg .error')`, 10*time.Second, "the server's refusal on the page")
		msg := eval[string](t, rt, `document.querySelector('#s-msg .error').textContent`)
		require.Contains(t, msg, "forbidden", "the page shows the server's refusal")
		for _, s := range request[[]struct {
			Comment string `json:"comment"`
		}](t, p.nc, streams.AlertsSilenceListSubject, nil) {
			require.NotEqual(t, "a reader tries", s.Comment, "a reader's silence was stored")
		}
		rt.screenshot(t, p, "reader-refused")
		rt.noErrors(t, "alerts as reader")
	})

	t.Run("stopped nodes show on the overview within 2s", func(t *testing.T) {
		tb.open(t, p, "/overview")
		tb.wait(t, `document.querySelector('#ready[data-ready=true]')`, 30*time.Second, "the overview saying ready")
		c := p.app.Cluster()

		// One node of three: the streams keep their quorum, so /readyz
		// stays ready (it judges the data path), and the node's row says
		// it stopped.
		node := c.Nodes()[2].Name()
		c.StopNode(2)
		stopped := time.Now()
		if err := tb.poll(fmt.Sprintf(`document.querySelector('#nodes tr[data-node=%q][data-running=false]')`, node), 2*time.Second); err != nil {
			t.Fatalf("overview does not show node %s stopped within 2s: %v", node, err)
		}
		t.Logf("overview showed %s stopped %s after it stopped", node, time.Since(stopped).Round(time.Millisecond))

		// A second one: the streams lose their quorum and /readyz says
		// so; the page must follow within 2s, however long JetStream
		// takes to answer the overview's questions meanwhile.
		c.StopNode(1)
		var saidAt time.Time
		var said string
		for deadline := time.Now().Add(30 * time.Second); ; {
			if code, body := get(p.base + "/readyz"); code == http.StatusServiceUnavailable {
				saidAt, said = time.Now(), body
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("/readyz still ready 30s after two of three nodes stopped")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := tb.poll(`document.querySelector('#ready[data-ready=false]') && document.querySelector('#problems li')`, 2*time.Second); err != nil {
			t.Fatalf("overview does not say not ready within 2s of /readyz (%q): %v", said, err)
		}
		t.Logf("overview said not ready %s after /readyz did", time.Since(saidAt).Round(time.Millisecond))
		tb.screenshot(t, p, "overview-nodes-down")
		tb.noErrors(t, "overview with nodes down")

		// Back to three, so the platform stops as it would in production.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		require.NoError(t, c.RestartNode(ctx, 1))
		require.NoError(t, c.RestartNode(ctx, 2))
	})
}

// matchEventually compares what the page shows with what the platform
// says until they agree (both move: heartbeats, weights), or fails with
// the last pair.
func matchEventually(t *testing.T, d time.Duration, f func() (got, want string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, want := f()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page shows\n%s\nthe platform says\n%s", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// alertsMatch checks the page's firing alerts against alerts.list.
func alertsMatch(t *testing.T, p *browserPlatform, tb *tab) {
	t.Helper()
	matchEventually(t, 10*time.Second, func() (string, string) {
		var want []string
		for _, a := range request[[]alertStatus](t, p.nc, streams.AlertsListSubject, nil) {
			want = append(want, a.Fingerprint+":"+a.Status.State)
		}
		sort.Strings(want)
		got := eval[[]string](t, tb, `[...document.querySelectorAll('#alerts-table tr[data-fingerprint]')].map(r => r.dataset.fingerprint + ':' + r.dataset.state).sort()`)
		return fmt.Sprint(got), fmt.Sprint(want)
	})
}

// authConsole serves a second console, with logins from a users file
// (admin "ada", reader "rita"), against the same platform, and returns
// its base URL: what `platform run --auth` serves, without a second
// cluster.
func authConsole(t *testing.T, p *browserPlatform) string {
	t.Helper()
	dir := t.TempDir()
	users := `{"users": [
		{"name": "ada", "role": "admin", "password": "admin-secret"},
		{"name": "rita", "role": "reader", "password": "reader-secret"}]}`
	path := filepath.Join(dir, "users.json")
	require.NoError(t, os.WriteFile(path, []byte(users), 0o600))
	f, err := auth.Load(path)
	require.NoError(t, err)
	c, err := console.New(console.Options{Users: f, Logger: clustertest.Logger(), Ready: func(ctx context.Context) error {
		if code, body := get(p.base + "/readyz"); code != http.StatusOK {
			return errors.New(body)
		}
		return nil
	}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.Start(ctx, console.Platform{Conn: p.nc, JS: p.js})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestConsoleScale measures first paint with 10,000 members in MEMBERS,
// 10,000 instances in WEIGHTS and 100,000 events in one topic. Filling
// them takes longer than make test should, so it runs with
// CONSOLE_SCALE=1:
//
//	CONSOLE_SCALE=1 go test -run TestConsoleScale -v ./console
func TestConsoleScale(t *testing.T) {
	if os.Getenv("CONSOLE_SCALE") == "" {
		t.Skip("set CONSOLE_SCALE=1 to measure first paint with 10,000 members and weights and 100,000 events")
	}
	p := startBrowserPlatform(t)
	const members, events = 10_000, 100_000
	fill := func(n int, subject func(i int) string, body func(i int) []byte) {
		t.Helper()
		start := time.Now()
		for i := 0; i < n; i++ {
			for {
				if _, err := p.js.PublishAsync(subject(i), body(i)); err == nil {
					break
				}
				<-p.js.PublishAsyncComplete()
			}
		}
		select {
		case <-p.js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			t.Fatal("publishes not acknowledged within 5 minutes")
		}
		t.Logf("stored %d messages on %s… in %s", n, subject(0), time.Since(start).Round(time.Millisecond))
	}
	now := time.Now().UTC()
	fill(members, func(i int) string { return fmt.Sprintf("$KV.%s.scale.i%05d", streams.BucketMembers, i) }, func(i int) []byte {
		b, _ := json.Marshal(membership.Member{Service: "scale", Instance: fmt.Sprintf("i%05d", i), State: membership.Alive,
			Phi: float64(i%100) / 10, LastSeen: now, Quality: membership.Good, FailureProbability: float64(i%1000) / 1000})
		return b
	})
	// The balancer writes a WEIGHTS record for each of these members too
	// (blackout, then expired); these give them varied weights meanwhile.
	fill(members, func(i int) string { return fmt.Sprintf("$KV.%s.scale.i%05d", streams.BucketWeights, i) }, func(i int) []byte {
		b, _ := json.Marshal(balancer.Record{Service: "scale", Instance: fmt.Sprintf("i%05d", i), Weight: float64(10 + i*7919%191),
			Target: float64(10 + i%193), Reason: balancer.ReasonPolicy, Inputs: balancer.Inputs{RPS: float64(i % 97), State: membership.Alive},
			FirstSeen: now, LastReport: now})
		return b
	})
	fill(events, func(int) string { return "events.scale" }, func(i int) []byte {
		return fmt.Appendf(nil, `{"n":%d,"customer":"c%d","amount":%d}`, i, i%977, i%1000)
	})

	settle(t)

	for _, path := range []string{"members?service=scale&limit=100", "members?sort=phi&order=desc&limit=100", "balancer?service=scale&limit=100", "balancer?sort=weight&order=desc&limit=100",
		"events?topic=scale&limit=100", "events?topic=scale&q=c976&limit=100", "overview"} {
		for range 2 {
			start := time.Now()
			code, body := get(p.base + "/console/api/" + path)
			t.Logf("GET /console/api/%-40s %d, %6d bytes in %s", path, code, len(body), time.Since(start).Round(100*time.Microsecond))
		}
	}

	// Each page is loaded rounds times as a new document (the page is
	// served no-store, so no load reuses the last one's answers); the
	// first load of a new tab, which also starts its renderer, is the
	// cold one.
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("CONSOLE_SCALE_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	type target struct{ route, ready, cells string }
	pages := []target{
		{"/members?service=scale", `document.querySelectorAll('#members-table tbody tr').length == 100`, "#members-table tbody td"},
		{"/members?sort=phi&order=desc", `document.querySelectorAll('#members-table tbody tr').length == 100`, "#members-table tbody td"},
		{"/balancer?service=scale", `document.querySelectorAll('#balancer-table tbody tr').length == 100`, "#balancer-table tbody td"},
		{"/balancer?sort=weight&order=desc", `document.querySelectorAll('#balancer-table tbody tr').length == 100`, "#balancer-table tbody td"},
		{"/events?topic=scale", `document.querySelectorAll('#ev-table tbody tr').length == 100`, "#ev-table tbody td"},
		{"/overview", `document.querySelector('#streams tbody tr')`, "#streams tbody td"},
	}
	load := func(tb *tab, pg target) paint {
		t.Helper()
		tb.openMeasured(t, p, pg.route, pg.cells)
		tb.wait(t, pg.ready, 30*time.Second, pg.route+" shows its data")
		pt := tb.paint(t)
		tb.noErrors(t, pg.route)
		return pt
	}
	first := p.tab(t)
	cold := load(first, pages[0])
	t.Logf("cold: a new tab's first load of %s: first contentful paint %.0f ms, data presented %.0f ms", pages[0].route, cold.FCP, cold.Shown)
	t.Logf("cold: %s", first.timeline(t))

	tb := p.tab(t)
	load(tb, pages[len(pages)-1]) // this tab's renderer starts, unmeasured
	// Round robin, so a page's figures do not depend on where in the run
	// it came (a busy spell of the machine spreads over every page).
	fcp, shown := make([][]float64, len(pages)), make([][]float64, len(pages))
	c0, w0 := processCPU(t), time.Now()
	for i := range rounds {
		for k, pg := range pages {
			pt := load(tb, pg)
			// -1: the browser reported no such paint for this load.
			if pt.FCP >= 0 {
				fcp[k] = append(fcp[k], pt.FCP)
			}
			if pt.Shown >= 0 {
				shown[k] = append(shown[k], pt.Shown)
			}
			if i == 0 {
				t.Logf("%-30s %s", pg.route, tb.timeline(t))
			}
		}
	}
	for k, pg := range pages {
		t.Logf("%-32s %d loads: first contentful paint %s, data presented %s", pg.route, rounds, spread(fcp[k]), spread(shown[k]))
	}
	t.Logf("the platform's process meanwhile: %.0f%% of a core", 100*float64(processCPU(t)-c0)/float64(time.Since(w0)))
}

// settle waits until this process (the platform and the test) has used
// under a quarter of a core in each of five seconds in a row, two minutes
// at most. Ten thousand members that appear at once and stop
// heartbeating keep the platform busy for a while: the detector declares
// them suspect, then dead, the balancer writes their weights at each
// change, and every follower of MEMBERS and WEIGHTS catches up, at over a
// core for seconds at a time. Pages loaded then measure a browser
// starved of CPU, not the console; this test is about the console at
// scale on a platform that has taken its members in.
func settle(t *testing.T) {
	t.Helper()
	start, quiet := time.Now(), 0
	for quiet < 5 {
		c0, w0 := processCPU(t), time.Now()
		time.Sleep(time.Second)
		share := float64(processCPU(t)-c0) / float64(time.Since(w0))
		if quiet++; share >= 0.25 {
			quiet = 0
		}
		if time.Since(start) > 2*time.Minute {
			t.Logf("platform still busy after %s (%.0f%% of a core): measuring anyway", time.Since(start).Round(time.Second), 100*share)
			return
		}
	}
	t.Logf("platform settled after %s: under 25%% of a core for 5 s", time.Since(start).Round(time.Second))
}

// processCPU is the CPU time this process (the platform and the test) has
// used.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// spread says "min–max ms (median m, n loads)" of the loads that had a
// value.
func spread(ms []float64) string {
	if len(ms) == 0 {
		return "none reported"
	}
	slices.Sort(ms)
	return fmt.Sprintf("%.0f–%.0f ms (median %.0f of %d)", ms[0], ms[len(ms)-1], ms[len(ms)/2], len(ms))
}
