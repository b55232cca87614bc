package alerting_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

// TestMsgpackHeartbeatsAreRead: heartbeats are read by the one decoder
// every service shares, so a msgpack heartbeat (Content-Type
// application/msgpack) feeds the rules like a JSON one instead of being
// counted as bad input.
func TestMsgpackHeartbeatsAreRead(t *testing.T) {
	_, nc, _ := clustertest.Provisioned(t, 1)
	ctx := clustertest.Context(t, time.Minute)
	s, _ := start(t, ctx, nc, writeRules(t, `
evaluation_interval: 100ms
rules:
  - alert: Busy
    over: heartbeats
    expr: cpu > 0.9
    labels: {severity: warning}
route: {group_by: [alertname], group_wait: 100ms, group_interval: 100ms, repeat_interval: 1h}
`))
	body, err := service.Msgpack.Encode(service.Load{Seq: 1, IntervalMS: 100, CPU: 0.95})
	require.NoError(t, err)
	clustertest.Eventually(t, 10*time.Second, func() error {
		m := nats.NewMsg(streams.HeartbeatSubject("demo", "i1"))
		m.Header.Set(service.ContentTypeHeader, service.ContentTypeMsgpack)
		m.Data = body
		if err := nc.PublishMsg(m); err != nil {
			return err
		}
		for _, a := range s.Engine().Alerts(time.Now(), alerting.AllAlerts) {
			if a.Name() == "Busy" {
				return nil
			}
		}
		return errors.New("no alert from a msgpack heartbeat with cpu 0.95")
	})
}
