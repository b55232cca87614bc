package detectorbench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/detector"
)

// The test binary is also the processes the benchmarks start: with one
// of these variables set it runs ServeInstances, ServeSenders (options in
// JSON) or a detector (the NATS URL) instead of the tests.
const (
	instancesEnv = "DETECTORBENCH_INSTANCES"
	sendersEnv   = "DETECTORBENCH_SENDERS"
	detectorEnv  = "DETECTORBENCH_DETECTOR"
)

func TestMain(m *testing.M) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if v := os.Getenv(instancesEnv); v != "" {
		var opts InstanceOptions
		if err := json.Unmarshal([]byte(v), &opts); err != nil {
			os.Exit(2)
		}
		_ = ServeInstances(ctx, opts)
		os.Exit(0)
	}
	if v := os.Getenv(sendersEnv); v != "" {
		var opts SenderOptions
		if err := json.Unmarshal([]byte(v), &opts); err != nil {
			os.Exit(2)
		}
		opts.Out = os.Stdout
		_ = ServeSenders(ctx, opts)
		os.Exit(0)
	}
	if url := os.Getenv(detectorEnv); url != "" {
		nc, err := nats.Connect(url)
		if err != nil {
			os.Exit(2)
		}
		d, err := detector.New(detector.Options{Conn: nc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			os.Exit(2)
		}
		_ = d.Run(ctx)
		nc.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func spawnTestInstances(opts InstanceOptions) *exec.Cmd {
	b, _ := json.Marshal(opts)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), instancesEnv+"="+string(b))
	return cmd
}

// A short recording of real processes: each class shows what was done to
// it, and the recording replays through the evaluation.
func TestRecordLiveProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes for seconds")
	}
	t.Parallel()
	rec, err := Record(clustertest.Context(t, time.Minute), RecordOptions{Duration: 8 * time.Second, PerProcess: 2, Spawn: spawnTestInstances, Seed: 3})
	require.NoError(t, err)
	byProc := map[string][]RecordedInstance{}
	for _, in := range rec.Instances {
		svc := in.Key[:bytes.IndexByte([]byte(in.Key), '.')]
		byProc[svc] = append(byProc[svc], in)
	}
	for _, svc := range []string{"platform-rec-quiet", "platform-rec-contended", "platform-rec-paused", "platform-rec-delayed", "platform-rec-crash", "platform-rec-lost"} {
		require.Len(t, byProc[svc], 2, "%s instances", svc)
	}
	quiet := byProc["platform-rec-quiet"][0]
	require.Greater(t, len(quiet.Arrivals), 40, "a quiet instance heartbeats all along")
	require.EqualValues(t, -1, quiet.Lives[0].EndMS)
	for _, svc := range []string{"platform-rec-crash", "platform-rec-lost"} {
		in := byProc[svc][0]
		end := in.Lives[0].EndMS
		require.Positive(t, end, "%s dies", svc)
		require.Equal(t, svc == "platform-rec-lost", in.Lives[0].HostLost)
		require.Less(t, in.Arrivals[len(in.Arrivals)-1], end+50, "%s: no heartbeat after its death", svc)
	}
	require.NoError(t, rec.validate())

	var buf bytes.Buffer
	_, err = rec.WriteTo(&buf)
	require.NoError(t, err)
	path := t.TempDir() + "/rec.json"
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	back, err := ReadRecording(path)
	require.NoError(t, err)
	require.Equal(t, rec, back)

	out := play(back.trace(), newFixed(time.Second, len(back.Instances)), 10*time.Millisecond, nil)
	require.Len(t, out.deaths, 2*5, "five processes of two instances die")
}

// One detector process takes heartbeats over the network from another
// process, probes the instances and writes MEMBERS: every instance ends
// alive, probes are answered, and refreshes are written, not one record
// per heartbeat.
func TestScaleWithIO(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes for seconds")
	}
	t.Parallel()
	c, nc, _ := clustertest.Provisioned(t, 1)
	const n = 300
	r, err := MeasureScaleIO(clustertest.Context(t, 3*time.Minute), ScaleIOOptions{
		Conn: nc, URL: c.ClientURLs()[0], Instances: n, Interval: 200 * time.Millisecond, Seconds: 3,
		SpawnDetector: func(url string) *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), detectorEnv+"="+url)
			return cmd
		},
		SpawnSenders: func(o SenderOptions) *exec.Cmd {
			b, _ := json.Marshal(o)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), sendersEnv+"="+string(b))
			return cmd
		},
	})
	require.NoError(t, err)
	t.Logf("%+v", r)
	require.Equal(t, n, r.Alive)
	require.Positive(t, r.Cores)
	require.Positive(t, r.HeartbeatsPerSec)
	require.Positive(t, r.ProbesPerSec, "probes answered")
	require.Less(t, r.WritesPerSec, r.HeartbeatsPerSec, "refreshes, not a write per heartbeat")
	// Steady heartbeats change no lasting state (every instance ends
	// alive, above). A test machine running other tests in parallel can
	// stall the sender process past the suspect threshold for a moment,
	// and the detector then rightly says so; a flapping detector would
	// show many transitions, not a stray one.
	require.Less(t, r.TransitionsPerSec*r.Seconds, float64(n)/100, "steady heartbeats: at most a stray transition, no flapping")
}
