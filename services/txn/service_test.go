package txn

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

func startService(t *testing.T, e *env, opts Options) *Service {
	t.Helper()
	opts.Conn = clustertest.Connect(t, e.c)
	opts.HeartbeatInterval = -1
	opts.Logger = clustertest.Logger()
	svc, err := New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("txn service did not stop")
		}
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("service stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("service not ready")
	}
	return svc
}

// request sends body (a JSON string) and returns the decoded answer.
func request(t *testing.T, nc *nats.Conn, subject, body string) map[string]any {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 10*time.Second)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(msg.Data, &out), string(msg.Data))
	return out
}

func errorCode(resp map[string]any) string {
	e, _ := resp["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestService(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	startService(t, e, Options{MaxKeys: 8, MaxValueBytes: 64})
	nc := e.nc

	t.Run("the CLI flow from the README", func(t *testing.T) {
		ra := put(t, e.store, "acct.alice", "100")
		got := request(t, nc, streams.TxnGetSubject, `{"keys":["acct.alice","acct.bob"]}`)
		require.Equal(t, map[string]any{"values": map[string]any{
			"acct.alice": map[string]any{"value": "100", "revision": float64(ra)},
			"acct.bob":   nil,
		}}, got)

		body := fmt.Sprintf(`{"reads":{"acct.alice":%d,"acct.bob":0},"writes":{"acct.alice":"90","acct.bob":"10"},"deletes":[]}`, ra)
		got = request(t, nc, streams.TxnCommitSubject, body)
		require.Equal(t, true, got["committed"], got)
		revs := got["revisions"].(map[string]any)
		require.Len(t, revs, 2)

		// The same request again conflicts on alice and names the revisions.
		got = request(t, nc, streams.TxnCommitSubject, body)
		require.Equal(t, "conflict", errorCode(got), got)
		errBody := got["error"].(map[string]any)
		require.Equal(t, "acct.alice", errBody["key"])
		require.Equal(t, float64(ra), errBody["expected"])
		require.Equal(t, revs["acct.alice"], errBody["actual"])

		kve, err := e.kv.Get(clustertest.Context(t, 5*time.Second), "acct.bob")
		require.NoError(t, err)
		require.Equal(t, "10", string(kve.Value()))
	})

	t.Run("deleted keys read as deleted with their revision", func(t *testing.T) {
		rev := put(t, e.store, "gone", "x")
		got := request(t, nc, streams.TxnCommitSubject, fmt.Sprintf(`{"reads":{"gone":%d},"deletes":["gone"]}`, rev))
		require.Equal(t, true, got["committed"], got)
		del := got["revisions"].(map[string]any)["gone"]
		got = request(t, nc, streams.TxnGetSubject, `{"keys":["gone"]}`)
		require.Equal(t, map[string]any{"value": nil, "revision": del, "deleted": true}, got["values"].(map[string]any)["gone"])
	})

	t.Run("msgpack in, msgpack out", func(t *testing.T) {
		rev := put(t, e.store, "mp.k", "v1")
		b, err := msgpack.Marshal(map[string]any{"reads": map[string]uint64{"mp.k": rev}, "writes": map[string]string{"mp.k": "v2"}})
		require.NoError(t, err)
		m := nats.NewMsg(streams.TxnCommitSubject)
		m.Header.Set(service.ContentTypeHeader, service.ContentTypeMsgpack)
		m.Data = b
		resp, err := nc.RequestMsg(m, 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, service.ContentTypeMsgpack, resp.Header.Get(service.ContentTypeHeader))
		var out map[string]any
		require.NoError(t, msgpack.Unmarshal(resp.Data, &out))
		require.Equal(t, true, out["committed"], out)
	})

	t.Run("a null write in msgpack is refused", func(t *testing.T) {
		b, err := msgpack.Marshal(map[string]any{"writes": map[string]any{"mp.null": nil}})
		require.NoError(t, err)
		m := nats.NewMsg(streams.TxnCommitSubject)
		m.Header.Set(service.ContentTypeHeader, service.ContentTypeMsgpack)
		m.Data = b
		resp, err := nc.RequestMsg(m, 10*time.Second)
		require.NoError(t, err)
		perr := service.ParseError(service.Msgpack, resp.Data)
		require.NotNil(t, perr, "%q", resp.Data)
		require.Equal(t, service.CodeBadRequest, perr.Code)
		require.Equal(t, "mp.null", perr.Fields["key"])
		_, err = e.kv.Get(clustertest.Context(t, 5*time.Second), "mp.null")
		require.Error(t, err, "nothing is written")
	})

	t.Run("bad input gets a clear code and writes nothing", func(t *testing.T) {
		stream, err := e.js.Stream(clustertest.Context(t, 5*time.Second), "KV_STATE")
		require.NoError(t, err)
		info, err := stream.Info(clustertest.Context(t, 5*time.Second))
		require.NoError(t, err)
		before := info.State.LastSeq
		manyKeys := make([]string, 9)
		for i := range manyKeys {
			manyKeys[i] = fmt.Sprintf("%q:%q", fmt.Sprintf("k%d", i), "v")
		}
		tests := []struct {
			name, subject, body, code string
		}{
			{"malformed JSON", streams.TxnCommitSubject, `{"writes":`, service.CodeBadRequest},
			{"not JSON at all", streams.TxnCommitSubject, `hello`, service.CodeBadRequest},
			{"unknown field", streams.TxnCommitSubject, `{"writes":{"a":"1"},"bogus":1}`, service.CodeBadRequest},
			{"empty body", streams.TxnCommitSubject, ``, service.CodeBadRequest},
			{"empty transaction", streams.TxnCommitSubject, `{"reads":{},"writes":{},"deletes":[]}`, service.CodeBadRequest},
			{"negative revision", streams.TxnCommitSubject, `{"reads":{"a":-1},"writes":{"a":"1"}}`, service.CodeBadRequest},
			{"invalid key", streams.TxnCommitSubject, `{"writes":{"a b":"1"}}`, service.CodeBadRequest},
			{"wildcard key", streams.TxnCommitSubject, `{"writes":{"a.>":"1"}}`, service.CodeBadRequest},
			{"reserved key", streams.TxnCommitSubject, `{"writes":{"_txn.marker":"1"}}`, service.CodeBadRequest},
			{"write of a consumer group's position", streams.TxnCommitSubject, `{"writes":{"_consume.g.pos.0":"{}"}}`, service.CodeBadRequest},
			{"delete of a consumer group's assignment", streams.TxnCommitSubject, `{"writes":{"a":"1"},"deletes":["_consume.g.assign"]}`, service.CodeBadRequest},
			{"null write", streams.TxnCommitSubject, `{"writes":{"a":null}}`, service.CodeBadRequest},
			{"null write among values", streams.TxnCommitSubject, `{"writes":{"a":"1","b":null}}`, service.CodeBadRequest},
			{"written and deleted", streams.TxnCommitSubject, `{"writes":{"a":"1"},"deletes":["a"]}`, service.CodeBadRequest},
			{"more keys than a batch allows", streams.TxnCommitSubject, `{"writes":{` + strings.Join(manyKeys, ",") + `}}`, service.CodeTooLarge},
			{"oversize value", streams.TxnCommitSubject, `{"writes":{"a":"` + strings.Repeat("x", 65) + `"}}`, service.CodeTooLarge},
			{"get without keys", streams.TxnGetSubject, `{"keys":[]}`, service.CodeBadRequest},
			{"get invalid key", streams.TxnGetSubject, `{"keys":["a..b"]}`, service.CodeBadRequest},
			{"get reserved key", streams.TxnGetSubject, `{"keys":["_txn.marker"]}`, service.CodeBadRequest},
			{"get unknown field", streams.TxnGetSubject, `{"key":["a"]}`, service.CodeBadRequest},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := request(t, nc, tt.subject, tt.body)
				require.Equal(t, tt.code, errorCode(got), got)
				msg := got["error"].(map[string]any)["message"].(string)
				require.NotEmpty(t, msg)
			})
		}
		info, err = stream.Info(clustertest.Context(t, 5*time.Second))
		require.NoError(t, err)
		require.Equal(t, before, info.State.LastSeq, "bad requests must not write")

		// The service keeps answering.
		got := request(t, nc, streams.TxnGetSubject, `{"keys":["acct.alice"]}`)
		require.Contains(t, got, "values")
	})
}
