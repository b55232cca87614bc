package replicator

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/internal/jsapi"
)

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  *nats.Msg
		want jsapi.PubAck
		// When the answer is no ack: the code of the API error, or the
		// error it wraps, or a part of its text.
		code    jetstream.ErrorCode
		is      error
		message string
	}{
		{name: "ack", msg: &nats.Msg{Data: []byte(`{"stream":"EVENTS","seq":42}`)},
			want: jsapi.PubAck{Stream: "EVENTS", Seq: 42}},
		{name: "domain and duplicate", msg: &nats.Msg{Data: []byte(`{"stream":"EVENTS","domain":"hub","seq":7,"duplicate":true}`)},
			want: jsapi.PubAck{Stream: "EVENTS", Seq: 7, Duplicate: true}},
		{name: "spaced duplicate", msg: &nats.Msg{Data: []byte(`{"stream":"EVENTS","seq":7,"duplicate": true}`)},
			want: jsapi.PubAck{Stream: "EVENTS", Seq: 7, Duplicate: true}},
		{name: "fields in another order", msg: &nats.Msg{Data: []byte(`{"seq":1,"stream":"EVENTS"}`)},
			want: jsapi.PubAck{Stream: "EVENTS", Seq: 1}},
		{name: "api error", msg: &nats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10008,"description":"x"},"stream":"EVENTS","seq":0}`)},
			code: jsapi.CodeClusterNotAvail},
		{name: "no responders", msg: &nats.Msg{Header: nats.Header{"Status": {"503"}}}, is: errNoResponders},
		{name: "not an ack", msg: &nats.Msg{Data: []byte(`{}`)}, message: "bad acknowledgement"},
		{name: "not json", msg: &nats.Msg{Data: []byte(`+OK`)}, message: "bad acknowledgement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAck(tc.msg)
			switch {
			case tc.code != 0:
				require.True(t, jsapi.HasCode(err, tc.code), "got %v, want code %d", err, tc.code)
			case tc.is != nil:
				require.ErrorIs(t, err, tc.is)
			case tc.message != "":
				require.ErrorContains(t, err, tc.message)
			default:
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
			}
		})
	}
}
