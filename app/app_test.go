package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/admin"
	"github.com/platform/platform/streams"
)

// running is a platform process started in-process by a test.
type running struct {
	app  *app.App
	stop func()
	done chan error
}

// startApp runs a platform with opts until the test ends (or stop is
// called) and waits until it is ready.
func startApp(t *testing.T, opts app.Options) *running {
	t.Helper()
	r := launchApp(t, opts)
	r.waitReady(t, 60*time.Second)
	return r
}

// waitReady waits until the platform is ready.
func (r *running) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.app.Ready():
	case err := <-r.done:
		t.Fatalf("platform stopped before ready: %v", err)
	case <-time.After(d):
		t.Fatalf("platform not ready within %s", d)
	}
}

// launchApp runs a platform with opts until the test ends (or stop is
// called), without waiting for it to be ready.
func launchApp(t *testing.T, opts app.Options) *running {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = clustertest.Logger()
	}
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 100 * time.Millisecond
	}
	a, err := app.New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{app: a, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	var once bool
	r.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-r.done:
			require.NoError(t, err, "platform run")
		case <-time.After(60 * time.Second):
			t.Fatal("platform did not stop within 60s")
		}
	}
	t.Cleanup(r.stop)
	return r
}

func embedded(t *testing.T, nodes int, dir string) app.Options {
	return app.Options{Cluster: cluster.Options{
		Nodes: nodes, DataDir: dir, SyncAlways: true,
		ClientPort:  clustertest.FreePortRange(t, nodes),
		ClusterPort: clustertest.FreePortRange(t, nodes),
	}}
}

func connect(t *testing.T, urls []string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestThreeNodePlatform(t *testing.T) {
	p := startApp(t, embedded(t, 3, t.TempDir()))
	c := p.app.Cluster()
	require.NotEmpty(t, c.MetaLeader(), "meta leader")
	nc, js := connect(t, c.ClientURLs())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, spec := range streams.All(3) {
		s, err := js.Stream(ctx, spec.Name)
		require.NoError(t, err, "stream %s", spec.Name)
		info := s.CachedInfo()
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s: replicas = %d, want 3", spec.Name, info.Config.Replicas)
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			t.Errorf("stream %s has no leader", spec.Name)
		}
	}
	kvs := map[string]bool{}
	for name := range js.KeyValueStoreNames(ctx).Name() {
		kvs[name] = true
	}
	for _, b := range []string{streams.BucketState, streams.BucketMembers, streams.BucketWeights, streams.BucketSilences} {
		require.True(t, kvs[b], "KV bucket %s visible as a KV bucket", b)
	}

	instances := pingFor(t, nc, len(app.ServiceNames()))
	names := map[string]bool{}
	for _, in := range instances {
		names[in.Name] = true
	}
	for _, svc := range app.ServiceNames() {
		require.True(t, names["platform-"+svc], "$SRV.PING answered by platform-%s (got %v)", svc, instances)
	}

	code, body := httpGet(t, "http://"+p.app.HTTPAddr()+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	code, _ = httpGet(t, "http://"+p.app.HTTPAddr()+"/healthz")
	require.Equal(t, http.StatusOK, code)

	msg, err := nc.Request(streams.AdminStatusSubject, nil, 5*time.Second)
	require.NoError(t, err)
	var st admin.Status
	require.NoError(t, json.Unmarshal(msg.Data, &st), string(msg.Data))
	require.Len(t, st.Nodes, 3)
	require.True(t, st.Embedded, "embedded")
	require.Equal(t, c.MetaLeader(), st.MetaLeader)
	for _, n := range st.Nodes {
		require.True(t, n.Running, "node %s running", n.Name)
		require.Equal(t, n.Name == st.MetaLeader, n.MetaLeader, "node %s meta_leader", n.Name)
	}
	require.Len(t, st.Streams, len(streams.All(3)))

	_, metrics := httpGet(t, "http://"+p.app.HTTPAddr()+"/metrics")
	for _, want := range []string{
		`platform_nats_up{node="n1"} 1`,
		"platform_nats_jetstream_stream_leaders",
		`platform_service_requests_total{endpoint="status",service="admin"}`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		require.Contains(t, metrics, want)
	}
}

func TestNodeDownAndCatchUp(t *testing.T) {
	p := startApp(t, embedded(t, 3, t.TempDir()))
	c := p.app.Cluster()
	_, js := connect(t, c.ClientURLs())
	// Each request gets its own short deadline: a stream whose leader was
	// on the stopped node answers nothing until it elects another.
	try := func(op func(ctx context.Context) error) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return op(ctx)
		}
	}

	c.StopNode(2)
	for _, spec := range streams.All(3) {
		subject := strings.TrimSuffix(spec.Subjects[0], ">") + "probe"
		clustertest.Eventually(t, 30*time.Second, try(func(ctx context.Context) error {
			_, err := js.Publish(ctx, subject, []byte("while n3 is down"), jetstream.WithMsgID("probe-"+spec.Name))
			return err
		}))
		clustertest.Eventually(t, 30*time.Second, try(func(ctx context.Context) error {
			s, err := js.Stream(ctx, spec.Name)
			if err != nil {
				return err
			}
			m, err := s.GetLastMsgForSubject(ctx, subject)
			if err != nil {
				return fmt.Errorf("read back from %s: %w", spec.Name, err)
			}
			if string(m.Data) != "while n3 is down" {
				return fmt.Errorf("%s: read %q", spec.Name, m.Data)
			}
			return nil
		}))
	}

	rctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.RestartNode(rctx, 2))
	for _, spec := range streams.All(3) {
		clustertest.Eventually(t, 30*time.Second, try(func(ctx context.Context) error {
			s, err := js.Stream(ctx, spec.Name)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			if info.Cluster == nil {
				return fmt.Errorf("%s: no cluster info", spec.Name)
			}
			for _, r := range info.Cluster.Replicas {
				if r.Name == "n3" && r.Current && r.Lag == 0 {
					return nil
				}
			}
			return fmt.Errorf("%s: n3 not caught up: %+v", spec.Name, info.Cluster.Replicas)
		}))
	}
}

func TestRestartKeepsAcknowledgedData(t *testing.T) {
	dir := t.TempDir()
	opts := embedded(t, 3, dir)
	p := startApp(t, opts)
	_, js := connect(t, p.app.Cluster().ClientURLs())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 50
	for i := range n {
		_, err := js.Publish(ctx, "events.restart", fmt.Appendf(nil, "event-%d", i))
		require.NoError(t, err)
	}
	kv, err := js.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	rev, err := kv.Put(ctx, "acct.alice", []byte("100"))
	require.NoError(t, err)
	p.stop()

	p2 := startApp(t, opts)
	_, js2 := connect(t, p2.app.Cluster().ClientURLs())
	s, err := js2.Stream(ctx, streams.Events)
	require.NoError(t, err)
	for i := range n {
		m, err := s.GetMsg(ctx, uint64(i+1))
		require.NoError(t, err, "event %d after restart", i)
		require.Equal(t, fmt.Sprintf("event-%d", i), string(m.Data))
	}
	kv2, err := js2.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	// A direct KV read may be answered by a replica still catching up
	// after the restart: wait for it.
	clustertest.Eventually(t, 10*time.Second, func() error {
		e, err := kv2.Get(ctx, "acct.alice")
		if err != nil {
			return err
		}
		if string(e.Value()) != "100" || e.Revision() != rev {
			return fmt.Errorf("acct.alice = %q at revision %d after restart, want 100 at %d", e.Value(), e.Revision(), rev)
		}
		return nil
	})
}

func TestServicesOnExternalCluster(t *testing.T) {
	ext := clustertest.Start(t, 1) // a plain JetStream server, not a platform
	p := startApp(t, app.Options{NATS: strings.Join(ext.ClientURLs(), ","), Services: []string{"admin"}})
	require.Nil(t, p.app.Cluster())
	nc, js := connect(t, ext.ClientURLs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, streams.Events)
	require.NoError(t, err)
	require.Equal(t, 1, s.CachedInfo().Config.Replicas)
	instances := pingFor(t, nc, 1)
	require.Len(t, instances, 1)
	require.Equal(t, "platform-admin", instances[0].Name)
	code, body := httpGet(t, "http://"+p.app.HTTPAddr()+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
}

func TestAdminRejectsBadInput(t *testing.T) {
	p := startApp(t, embedded(t, 1, t.TempDir()))
	nc, _ := connect(t, p.app.Cluster().ClientURLs())
	tests := []struct {
		name        string
		contentType string
		body        []byte
		code        string
	}{
		{"garbage json", "", []byte("{not json"), service.CodeBadRequest},
		{"unknown field", "", []byte(`{"nodes":true}`), service.CodeBadRequest},
		{"trailing data", "", []byte(`{} {}`), service.CodeBadRequest},
		{"wrong content type", "text/xml", []byte("<status/>"), service.CodeUnsupportedMedia},
		{"bad msgpack", service.ContentTypeMsgpack, []byte{0xc1, 0xff}, service.CodeBadRequest},
		{"huge payload", "", []byte(`{"services":false,"x":"` + strings.Repeat("a", 64<<10) + `"}`), service.CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := nats.NewMsg(streams.AdminStatusSubject)
			m.Data = tt.body
			if tt.contentType != "" {
				m.Header.Set(service.ContentTypeHeader, tt.contentType)
			}
			resp, err := nc.RequestMsg(m, 5*time.Second)
			require.NoError(t, err)
			codec, _ := service.CodecFor(resp.Header.Get(service.ContentTypeHeader))
			e := service.ParseError(codec, resp.Data)
			require.NotNil(t, e, "error body, got %q", resp.Data)
			if e.Code != tt.code {
				t.Errorf("code = %q, want %q (%s)", e.Code, tt.code, e.Message)
			}
			require.NotEmpty(t, resp.Header.Get("Nats-Service-Error-Code"), "micro error header")
		})
	}
	// Still answering, in both codecs.
	resp, err := nc.Request(streams.AdminStatusSubject, []byte(`{"services":false}`), 5*time.Second)
	require.NoError(t, err)
	var st admin.Status
	require.NoError(t, json.Unmarshal(resp.Data, &st), string(resp.Data))
	require.Len(t, st.Nodes, 1)

	m := nats.NewMsg(streams.AdminStatusSubject)
	m.Header.Set(service.ContentTypeHeader, service.ContentTypeMsgpack)
	m.Data, err = service.Msgpack.Encode(admin.StatusRequest{})
	require.NoError(t, err)
	resp, err = nc.RequestMsg(m, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, service.ContentTypeMsgpack, resp.Header.Get(service.ContentTypeHeader))
	var st2 admin.Status
	require.NoError(t, service.Msgpack.Decode(resp.Data, &st2))
	require.Len(t, st2.Nodes, 1)
}

func TestNodeFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	port := clustertest.FreePortRange(t, 1)
	conf := filepath.Join(dir, "node.conf")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, `
server_name: solo
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
`, port, filepath.Join(dir, "js")), 0o600))
	p := startApp(t, app.Options{Cluster: cluster.Options{ConfigFile: conf}, Services: []string{"admin"}})
	c := p.app.Cluster()
	require.Len(t, c.Nodes(), 1)
	require.Equal(t, "solo", c.Nodes()[0].Name())
	_, js := connect(t, c.ClientURLs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, streams.Events)
	require.NoError(t, err)
	require.Equal(t, 1, s.CachedInfo().Config.Replicas)
	require.DirExists(t, filepath.Join(dir, "js", "jetstream"))
}

// pingFor sends $SRV.PING until n instances answer within one 300 ms
// window (a loaded machine can answer later than that) or 15 s pass, and
// returns the answers of the fullest window.
func pingFor(t *testing.T, nc *nats.Conn, n int) []admin.Instance {
	t.Helper()
	var best []admin.Instance
	clustertest.Eventually(t, 15*time.Second, func() error {
		got, err := admin.Ping(clustertest.Context(t, 5*time.Second), nc, 300*time.Millisecond)
		if err != nil {
			return err
		}
		if len(got) > len(best) {
			best = got
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d instances answered $SRV.PING: %v", len(got), n, got)
		}
		return nil
	})
	return best
}
