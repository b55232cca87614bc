package consume

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/txn"
)

// memberEnv makes the test binary run one group member (a memberSpec in
// JSON) instead of the tests, so a test can kill it with SIGKILL.
const memberEnv = "CONSUME_TEST_MEMBER"

type memberSpec struct {
	URLs  string `json:"urls"`
	Group string `json:"group"`
	ID    string `json:"id"`
	// TTL and Tick are the member's (default: the tests' 2s and 100ms).
	TTL  time.Duration `json:"ttl,omitempty"`
	Tick time.Duration `json:"tick,omitempty"`
	// MaxBatch is the member's (default: the tests' 20).
	MaxBatch int `json:"max_batch,omitempty"`
	// Mode picks the handler: "" applies count exactly once; modeAtLeastOnce
	// commits count in a transaction of its own before the position;
	// modeGate makes the first event wait for a line on stdin.
	Mode string `json:"mode,omitempty"`
	// Log sends the member's logs (info and above) to stderr.
	Log bool `json:"log,omitempty"`
	// Debug, with Log, sends its debug lines too (partitions taken).
	Debug bool `json:"debug,omitempty"`
}

func TestMain(m *testing.M) {
	if v := os.Getenv(memberEnv); v != "" {
		os.Exit(runMemberProcess(v))
	}
	os.Exit(m.Run())
}

// runMemberProcess runs a member with the count handler until SIGTERM,
// then prints a memberReport in JSON on stdout.
func runMemberProcess(spec string) int {
	var s memberSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(s.URLs, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		return 2
	}
	defer nc.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if s.Log {
		level := slog.LevelInfo
		if s.Debug {
			level = slog.LevelDebug
		}
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	store, err := txn.NewStore(nc, txn.WithLogger(logger))
	if err != nil {
		return 2
	}
	m, err := New(Options{
		Conn: nc, Store: store, Group: s.Group, Member: s.ID, Handler: s.handler(ctx, store),
		TTL: cmp.Or(s.TTL, 2*time.Second), Tick: cmp.Or(s.Tick, 100*time.Millisecond), MaxBatch: cmp.Or(s.MaxBatch, 20), Logger: logger,
	})
	if err != nil {
		return 2
	}
	err = m.Run(ctx)
	b, _ := json.Marshal(memberReport{Applied: m.Applied(), Fenced: m.fenced.Load()})
	fmt.Println(string(b))
	if err != nil {
		return 1
	}
	return 0
}

// startProcess runs member id of group in a process of its own.
func (e *groupEnv) startProcess(t *testing.T, group, id string) *exec.Cmd {
	t.Helper()
	spec, err := json.Marshal(memberSpec{URLs: strings.Join(e.c.ClientURLs(), ","), Group: group, ID: id})
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), memberEnv+"="+string(spec))
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestGroupExactlyOnceWhenMemberKilled runs two members in processes of
// their own and one in the test; one process is killed with SIGKILL
// while it applies events. Its partitions move once its membership
// expires, and every counter ends exact.
func TestGroupExactlyOnceWhenMemberKilled(t *testing.T) {
	e := newGroupEnv(t)
	const perTopic = 200
	var topics []string
	for i := range 15 {
		topics = append(topics, fmt.Sprintf("k%d", i))
	}
	e.publishPlain(t, topics, 0, perTopic/2)

	k1 := e.startProcess(t, "killed", "k1")
	e.startProcess(t, "killed", "k2")
	c := e.start(t, "killed", "c", count)
	key := groupKey("killed", "assign")
	clustertest.Eventually(t, 60*time.Second, func() error {
		en, err := e.store.Get(clustertest.Context(t, 5*time.Second), key)
		if err != nil || !en.Found {
			return fmt.Errorf("no assignment yet (%v)", err)
		}
		a, err := decode[assignment](key, en.Value)
		if err != nil {
			return err
		}
		if !slices.Equal(a.Members, []string{"c", "k1", "k2"}) {
			return fmt.Errorf("members %v", a.Members)
		}
		return nil
	})
	clustertest.Eventually(t, 60*time.Second, func() error {
		n := 0
		for _, got := range e.counters(t, topics) {
			n += got.N
		}
		if n < 300 {
			return fmt.Errorf("%d events applied", n)
		}
		return nil
	})
	require.NoError(t, k1.Process.Signal(syscall.SIGKILL))
	_ = k1.Wait()
	e.publishPlain(t, topics, perTopic/2, perTopic)

	want := counter{N: perTopic, Sum: perTopic * (perTopic - 1) / 2}
	e.waitApplied(t, topics, want, 90*time.Second)
	c.stop(t)
	e.checkExact(t, topics, want, "")
}
