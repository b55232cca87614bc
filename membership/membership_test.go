package membership_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/streams"
)

var lastSeen = time.Date(2025, 3, 1, 12, 30, 45, 123456789, time.UTC)

// The records' encoding is what MEMBERS and DETECTOR hold: readers and
// stored data depend on it byte for byte.
func TestEncodingIsStable(t *testing.T) {
	m := membership.Member{
		Service: "platform-txn", Instance: "Kx3", State: membership.Suspect, Phi: 3.25,
		LastSeen: lastSeen, Quality: membership.Fair, FailureProbability: 0.0125,
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"member", m, `{"service":"platform-txn","instance":"Kx3","state":"suspect","phi":3.25,"last_seen":"2025-03-01T12:30:45.123456789Z","quality":"fair","failure_probability":0.0125}`},
		{"transition", membership.Transition{Member: m, Previous: membership.Alive, At: lastSeen.Add(time.Second)},
			`{"service":"platform-txn","instance":"Kx3","state":"suspect","phi":3.25,"last_seen":"2025-03-01T12:30:45.123456789Z","quality":"fair","failure_probability":0.0125,"previous":"alive","at":"2025-03-01T12:30:46.123456789Z"}`},
		{"first sighting", membership.Transition{Member: membership.Member{Service: "a", Instance: "b", State: membership.Alive}},
			`{"service":"a","instance":"b","state":"alive","phi":0,"last_seen":"0001-01-01T00:00:00Z","quality":"excellent","failure_probability":0,"previous":"","at":"0001-01-01T00:00:00Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.v)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
	var back membership.Transition
	require.NoError(t, json.Unmarshal([]byte(tests[1].want), &back))
	require.Equal(t, tests[1].v, back)
}

func TestKeyIsTheMembersKey(t *testing.T) {
	for _, tt := range []struct{ svc, inst string }{{"demo", "i1"}, {"platform-txn", "Kx3abc"}, {"a_b", "c=d/e"}} {
		m := membership.Member{Service: tt.svc, Instance: tt.inst}
		require.Equal(t, streams.MemberKey(tt.svc, tt.inst), m.Key())
		require.Equal(t, m.Key(), membership.Key(tt.svc, tt.inst))
	}
}

func TestQualityJSON(t *testing.T) {
	for q := membership.Excellent; q <= membership.VeryPoor; q++ {
		b, err := json.Marshal(q)
		require.NoError(t, err)
		var back membership.Quality
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, q, back)
	}
	var q membership.Quality
	require.Error(t, json.Unmarshal([]byte(`"superb"`), &q))
	b, err := json.Marshal(membership.VeryPoor)
	require.NoError(t, err)
	require.Equal(t, `"very_poor"`, string(b))
	require.Equal(t, "quality(9)", membership.Quality(9).String())
}

func TestDecode(t *testing.T) {
	good := `{"service":"platform-txn","instance":"i1","state":"alive","phi":0.5}`
	tests := []struct {
		name, key, value string
		ok               bool
	}{
		{"record", "platform-txn.i1", good, true},
		{"unknown fields are ignored", "platform-txn.i1", `{"service":"platform-txn","instance":"i1","state":"dead","zone":"eu"}`, true},
		{"key of another member", "platform-txn.i2", good, false},
		{"not JSON", "platform-txn.i1", "alive", false},
		{"empty", "platform-txn.i1", "", false},
		{"no service", ".i1", `{"instance":"i1","state":"alive"}`, false},
		{"service with a dot", "a.b.i1", `{"service":"a.b","instance":"i1","state":"alive"}`, false},
		{"unknown state", "platform-txn.i1", `{"service":"platform-txn","instance":"i1","state":"zombie"}`, false},
		{"no state", "platform-txn.i1", `{"service":"platform-txn","instance":"i1"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := membership.Decode(tt.key, []byte(tt.value))
			if !tt.ok {
				if !errors.Is(err, membership.ErrBadRecord) {
					t.Fatalf("Decode(%q, %s) = %+v, %v; want an error wrapping ErrBadRecord", tt.key, tt.value, m, err)
				}
				return
			}
			if err != nil || m.Key() != tt.key {
				t.Fatalf("Decode(%q, %s) = %+v, %v", tt.key, tt.value, m, err)
			}
		})
	}
}

// FuzzDecode reads arbitrary MEMBERS records: every refusal wraps
// ErrBadRecord, and a record Decode accepts names a valid service and
// instance, is the record of its key, has one of the four states, and
// reads back the same when a detector writes it again.
func FuzzDecode(f *testing.F) {
	good := `{"service":"platform-txn","instance":"i1","state":"alive","phi":0.5}`
	for _, s := range [][2]string{
		{"platform-txn.i1", good}, {"platform-txn.i2", good},
		{"platform-txn.i1", `{"service":"platform-txn","instance":"i1","state":"dead","zone":"eu"}`},
		{"platform-txn.i1", `{"service":"platform-txn","instance":"i1","state":"suspect","quality":"very_poor","last_seen":"2025-03-01T12:00:00Z","failure_probability":0.25}`},
		{"platform-txn.i1", `{"service":"platform-txn","instance":"i1","state":"alive","quality":"superb"}`},
		{"platform-txn.i1", "alive"}, {"platform-txn.i1", ""}, {".i1", `{"instance":"i1","state":"alive"}`},
		{"a.b.i1", `{"service":"a.b","instance":"i1","state":"alive"}`},
		{"platform-txn.i1", `{"service":"platform-txn","instance":"i1","state":"zombie"}`},
		{"platform-txn.i1", `{"service":"platform-txn","instance":"i1"}`},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		m, err := membership.Decode(key, value)
		if err != nil {
			if !errors.Is(err, membership.ErrBadRecord) {
				t.Fatalf("Decode(%q, %q): %v, want an error wrapping ErrBadRecord", key, value, err)
			}
			return
		}
		switch {
		case !membership.ValidToken(m.Service) || !membership.ValidToken(m.Instance):
			t.Fatalf("Decode(%q, %q) accepted service %q, instance %q", key, value, m.Service, m.Instance)
		case m.Key() != key:
			t.Fatalf("Decode(%q, %q) is the record of %q", key, value, m.Key())
		case m.State != membership.Alive && m.State != membership.Suspect && m.State != membership.Dead && m.State != membership.Left:
			t.Fatalf("Decode(%q, %q) accepted state %q", key, value, m.State)
		}
		written, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("write %+v: %v", m, err)
		}
		back, err := membership.Decode(key, written)
		if err != nil {
			t.Fatalf("record %q written back as %q is refused: %v", value, written, err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(written) {
			t.Fatalf("record %q written back as %q reads as %q", value, written, again)
		}
	})
}
