package service

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

type sample struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestCodecFor(t *testing.T) {
	tests := []struct {
		name, ct string
		want     Codec
		code     string
	}{
		{"empty is json", "", JSON, ""},
		{"json", "application/json", JSON, ""},
		{"json with charset", "application/json; charset=utf-8", JSON, ""},
		{"msgpack", "application/msgpack", Msgpack, ""},
		{"x-msgpack", "application/x-msgpack", Msgpack, ""},
		{"xml", "application/xml", JSON, CodeUnsupportedMedia},
		{"garbage", ";;;", JSON, CodeUnsupportedMedia},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CodecFor(tt.ct)
			if tt.code != "" {
				require.Error(t, err)
				require.Equal(t, tt.code, AsError(err).Code)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, c)
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	mp, err := Msgpack.Encode(sample{Name: "a", Count: 2})
	require.NoError(t, err)
	mpExtra, err := Msgpack.Encode(map[string]any{"name": "a", "extra": 1})
	require.NoError(t, err)
	tests := []struct {
		name    string
		codec   Codec
		data    []byte
		want    sample
		wantErr bool
	}{
		{"json", JSON, []byte(`{"name":"a","count":2}`), sample{"a", 2}, false},
		{"msgpack", Msgpack, mp, sample{"a", 2}, false},
		{"empty", JSON, nil, sample{}, true},
		{"blank", JSON, []byte("  \n"), sample{}, true},
		{"garbage", JSON, []byte("{nope"), sample{}, true},
		{"unknown field json", JSON, []byte(`{"name":"a","extra":1}`), sample{}, true},
		{"unknown field msgpack", Msgpack, mpExtra, sample{}, true},
		{"trailing", JSON, []byte(`{"name":"a"}x`), sample{}, true},
		{"wrong type", JSON, []byte(`{"count":"two"}`), sample{}, true},
		{"garbage msgpack", Msgpack, []byte{0xc1}, sample{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got sample
			err := tt.codec.Decode(tt.data, &got)
			if tt.wantErr {
				require.Error(t, err)
				require.Equal(t, CodeBadRequest, AsError(err).Code)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestErrorBody(t *testing.T) {
	e := Errorf(CodeConflict, "key %q moved", "acct.alice").With("key", "acct.alice").With("expected", 7)
	b, err := json.Marshal(e)
	require.NoError(t, err)
	require.JSONEq(t, `{"error":{"code":"conflict","message":"key \"acct.alice\" moved","key":"acct.alice","expected":7}}`, string(b))
	require.Equal(t, "409", e.Status())
	for _, c := range []Codec{JSON, Msgpack} {
		enc, err := c.Encode(e.Body())
		require.NoError(t, err)
		got := ParseError(c, enc)
		require.NotNil(t, got)
		require.Equal(t, CodeConflict, got.Code)
		require.Equal(t, "acct.alice", got.Fields["key"])
	}
	require.Nil(t, ParseError(JSON, []byte(`{"ok":true}`)))
}

// TestMsgpackNilIntoTime: the msgpack decoder panics on a nil where a
// time.Time is expected; the codec answers bad_request instead, strict
// or lenient, at the top level or inside a list.
func TestMsgpackNilIntoTime(t *testing.T) {
	for name, body := range map[string][]byte{
		"field":         {0x81, 0xa2, 'a', 't', 0xc0},
		"field in list": {0x91, 0x81, 0xa2, 'a', 't', 0xc0},
	} {
		t.Run(name, func(t *testing.T) {
			var d document
			var ds []document
			target := any(&d)
			if body[0] == 0x91 {
				target = &ds
			}
			err := Msgpack.Decode(body, target)
			require.Error(t, err)
			require.Equal(t, CodeBadRequest, AsError(err).Code, "%v", err)
			err = Msgpack.DecodeLenient(body, target)
			require.Error(t, err)
			require.Equal(t, CodeBadRequest, AsError(err).Code, "%v", err)
		})
	}
}
