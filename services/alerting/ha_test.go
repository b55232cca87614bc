package alerting_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/streams"
)

func TestThreeInstancesNotifyOnce(t *testing.T) {
	c, _, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, 2*time.Minute)
	members, err := js.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	got := alertsOn(t, ctx, js)
	path := writeRules(t, liveRules)
	svcs, cancels := startMany(t, ctx, c, path, 3)
	active := func() (int, error) {
		n, idx := 0, -1
		for i, s := range svcs {
			if s.Active() {
				n, idx = n+1, i
			}
		}
		if n != 1 {
			return -1, fmt.Errorf("%d active instances", n)
		}
		return idx, nil
	}
	clustertest.Eventually(t, 10*time.Second, func() error { _, err := active(); return err })
	putMember(t, ctx, members, "i1", membership.Dead)
	clustertest.Eventually(t, 20*time.Second, func() error {
		if n := len(got()); n != 1 {
			return fmt.Errorf("%d notifications, want 1", n)
		}
		return nil
	})

	// Stop the active instance; another takes over and notifies the next
	// change once, without repeating the first.
	old, _ := active()
	cancels[old]()
	clustertest.Eventually(t, 20*time.Second, func() error {
		i, err := active()
		if err != nil {
			return err
		}
		if i == old {
			return errors.New("the stopped instance still holds the lease")
		}
		return nil
	})
	putMember(t, ctx, members, "i2", membership.Dead)
	clustertest.Eventually(t, 20*time.Second, func() error {
		ms := got()
		if len(ms) != 2 {
			return fmt.Errorf("%d notifications, want 2", len(ms))
		}
		if len(ms[1].Alerts) != 2 {
			return fmt.Errorf("second notification has %d alerts, want both dead instances", len(ms[1].Alerts))
		}
		return nil
	})
}

// TestForwardToRealAlertmanager runs the Debian package's Alertmanager
// and checks that a firing alert reaches it.
func TestForwardToRealAlertmanager(t *testing.T) {
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if bin, err = exec.LookPath("alertmanager"); err != nil {
			t.Skip("no Alertmanager binary (install the Debian package prometheus-alertmanager to run this test)")
		}
	}
	port := freePort(t)
	dir := t.TempDir()
	cfg := dir + "/am.yml"
	require.NoError(t, writeFile(cfg, "route: {receiver: \"null\"}\nreceivers: [{name: \"null\"}]\n"))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+dir,
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--cluster.listen-address=")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	amURL := "http://127.0.0.1:" + strconv.Itoa(port)
	clustertest.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get(amURL + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	})

	_, nc, js := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	members, err := js.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	s, _ := start(t, ctx, nc, writeRules(t, liveRules+"alertmanagers: ["+amURL+"]\n"))
	clustertest.Eventually(t, 10*time.Second, func() error {
		if !s.Active() {
			return errors.New("not active")
		}
		return nil
	})
	putMember(t, ctx, members, "i9", membership.Dead)
	clustertest.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get(amURL + "/api/v2/alerts?filter=alertname%3D%22InstanceDead%22")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var as []struct {
			Labels map[string]string `json:"labels"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&as); err != nil {
			return err
		}
		if len(as) != 1 || as[0].Labels["instance"] != "i9" {
			return fmt.Errorf("alertmanager holds %+v", as)
		}
		return nil
	})
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
