package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/service"
	"github.com/platform/platform/services/admin"
)

// TestGarbageToEverySubject sends malformed requests to every endpoint of
// every service (found through $SRV.INFO) and to the heartbeat subjects,
// then checks every request was answered and every service still answers.
func TestGarbageToEverySubject(t *testing.T) {
	p := startApp(t, embedded(t, 1, t.TempDir()))
	nc, _ := connect(t, p.app.Cluster().ClientURLs())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	infos := serviceInfos(t, nc)
	require.Len(t, infos, len(app.ServiceNames()), "one instance of every service")

	garbage := []struct {
		name, contentType string
		body              []byte
	}{
		{"broken json", "", []byte(`{"a":`)},
		{"binary", "", []byte{0, 1, 2, 0xff, 0xfe}},
		{"wrong content type", "image/png", []byte("\x89PNG")},
		{"bad msgpack", service.ContentTypeMsgpack, []byte{0xc1, 0xc1}},
		{"huge", "", []byte(strings.Repeat("x", 4<<20))},
		{"deep nesting", "", []byte(strings.Repeat("[", 10000))},
	}
	for _, info := range infos {
		for _, ep := range info.Endpoints {
			subject := strings.NewReplacer(">", "garbage.test", "*", "x").Replace(ep.Subject)
			for _, g := range garbage {
				m := nats.NewMsg(subject)
				m.Data = g.body
				if g.contentType != "" {
					m.Header.Set(service.HeaderContentType, g.contentType)
				}
				resp, err := nc.RequestMsgWithContext(ctx, m)
				require.NoError(t, err, "%s %s: %s", info.Name, subject, g.name)
				if resp.Header.Get("Nats-Service-Error-Code") == "" {
					// Some endpoints accept any bytes (an event is opaque
					// to ingest); they must still answer, and not with a
					// malformed body.
					require.True(t, json.Valid(resp.Data) || len(resp.Data) > 0, "%s %s: %s: empty answer", info.Name, subject, g.name)
				}
			}
		}
	}
	for _, subject := range []string{"hb.x", "hb.a.b.c.d", "hb.svc.inst"} {
		for _, g := range garbage {
			require.NoError(t, nc.Publish(subject, g.body))
		}
	}
	require.NoError(t, nc.FlushWithContext(ctx))

	instances, err := admin.Ping(ctx, nc, 300*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, instances, len(app.ServiceNames()), "every service still answers: %v", instances)
	resp, err := nc.Request(admin.StatusSubject, nil, 5*time.Second)
	require.NoError(t, err)
	require.Empty(t, resp.Header.Get("Nats-Service-Error-Code"), string(resp.Data))
}

func serviceInfos(t *testing.T, nc *nats.Conn) []micro.Info {
	t.Helper()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, nc.PublishRequest("$SRV.INFO", inbox, nil))
	var infos []micro.Info
	for {
		m, err := sub.NextMsg(300 * time.Millisecond)
		if err != nil {
			return infos
		}
		var info micro.Info
		require.NoError(t, json.Unmarshal(m.Data, &info))
		infos = append(infos, info)
	}
}
