package balancer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeRecord reads arbitrary WEIGHTS values under arbitrary keys as
// every reader of the bucket does: every refusal wraps ErrBadRecord and
// names the key; every accepted record names its own key with valid
// names, has a weight of at least 0, and can be written as JSON again (the
// console and admin status answer with it), reading back the same.
func FuzzDecodeRecord(f *testing.F) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	recs := []Record{
		{Service: "platform-txn", Instance: "ABC123", Weight: 87.5, Target: 120, Reason: ReasonPolicy + "+slow_start",
			Inputs:    Inputs{LatencyMS: 3.5, CPU: 0.4, ErrorRate: 0.01, InFlight: 3, P99MS: 9, State: "alive", FailureProbability: 0.2, MedianMS: 2},
			FirstSeen: t0, LastReport: t0.Add(time.Second)},
		{Service: "demo", Instance: "i1", Weight: 0, Reason: ReasonUnhealthy},
		{Service: "demo", Instance: "i2", Weight: 100, Reason: ReasonBlackout, FirstSeen: t0.In(time.FixedZone("", -7*3600))},
	}
	for _, r := range recs {
		b, _ := json.Marshal(r)
		f.Add(r.Key(), b)
	}
	for _, kv := range [][2]string{
		{"demo.i1", `{"service":"demo","instance":"i2","weight":50}`},
		{"demo.i1", `{"service":"demo","instance":"i1","weight":-1}`},
		{"a.b.c", `{"service":"a.b","instance":"c","weight":1}`},
		{".", `{"weight":1}`},
		{"demo.i1", `{"service":"demo","instance":"i1","weight":1e400}`},
		{"demo.i1", `{"service":"demo","instance":"i1","weight":"heavy"}`},
		{"demo.i1", `{"service":"demo","instance":"i1","first_seen":"0000-01-01T00:00:00+01:00"}`},
		{"demo.i1", `{"service":"demo","instance":"i1","last_report":"9999-12-31T23:59:59-23:59"}`},
		{"demo.i1", `null`}, {"demo.i1", ``}, {"demo.i1", `[]`}, {"demo.i1", strings.Repeat("[", 100000)},
	} {
		f.Add(kv[0], []byte(kv[1]))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		rec, err := DecodeRecord(key, value)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), "under") {
				t.Fatalf("value %q under %q: %v, want an ErrBadRecord naming the key", value, key, err)
			}
			return
		}
		switch {
		case rec.Key() != key:
			t.Fatalf("value %q under %q accepted for key %q", value, key, rec.Key())
		case strings.Count(key, ".") != 1:
			t.Fatalf("key %q accepted: a member key has one dot", key)
		case !(rec.Weight >= 0):
			t.Fatalf("value %q accepted with weight %v", value, rec.Weight)
		}
		again, err := json.Marshal(rec)
		if err != nil {
			t.Fatalf("value %q accepted as %+v, which JSON cannot write: %v", value, rec, err)
		}
		back, err := DecodeRecord(key, again)
		if err != nil {
			t.Fatalf("record %+v written as %s does not read back: %v", rec, again, err)
		}
		if twice, _ := json.Marshal(back); string(twice) != string(again) {
			t.Fatalf("record written as %s reads back as %s", again, twice)
		}
		if back.Weight != rec.Weight || !back.FirstSeen.Equal(rec.FirstSeen) || !back.LastReport.Equal(rec.LastReport) {
			t.Fatalf("record %+v reads back as %+v", rec, back)
		}
	})
}
