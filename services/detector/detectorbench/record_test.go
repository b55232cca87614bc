package detectorbench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
)

// instancesEnv makes the test binary a recorded process: it runs
// ServeInstances with the options in the variable.
const instancesEnv = "DETECTORBENCH_INSTANCES"

func TestMain(m *testing.M) {
	if v := os.Getenv(instancesEnv); v != "" {
		var opts InstanceOptions
		if err := json.Unmarshal([]byte(v), &opts); err != nil {
			os.Exit(2)
		}
		_ = ServeInstances(context.Background(), opts)
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
