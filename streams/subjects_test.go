package streams

import (
	"errors"
	"testing"
)

func TestSubjectBuilders(t *testing.T) {
	for _, tc := range []struct{ name, got, want string }{
		{"event", EventSubject("orders.eu"), "events.orders.eu"},
		{"ingest", IngestSubject("orders"), "ingest.orders"},
		{"heartbeat", HeartbeatSubject("platform-txn", "abc"), "hb.platform-txn.abc"},
		{"detector", DetectorSubject("dead", "svc", "i1"), "detector.dead.svc.i1"},
		{"alert", AlertSubject("critical", "InstanceDead"), "alerts.critical.InstanceDead"},
		{"alert name made one token", AlertSubject("info", "a.b c*>"), "alerts.info.a_b_c__"},
		{"empty alert name", AlertSubject("warning", ""), "alerts.warning._"},
		{"kv", KVSubject(BucketMembers, "svc.i1"), "$KV.MEMBERS.svc.i1"},
		{"member key", MemberKey("svc", "i1"), "svc.i1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestParseHeartbeatSubject(t *testing.T) {
	for _, tc := range []struct {
		name, subject, svc, inst string
		ok                       bool
	}{
		{"valid", "hb.platform-txn.Ab_1", "platform-txn", "Ab_1", true},
		{"wrong prefix", "hx.a.b", "", "", false},
		{"no instance", "hb.a", "", "", false},
		{"too many tokens", "hb.a.b.c", "", "", false},
		{"empty service", "hb..b", "", "", false},
		{"bad character", "hb.a.b*", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, inst, err := ParseHeartbeatSubject(tc.subject)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseHeartbeatSubject(%q) error = %v, want ok=%v", tc.subject, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadSubject) {
				t.Fatalf("error %v does not wrap ErrBadSubject", err)
			}
			if svc != tc.svc || inst != tc.inst {
				t.Fatalf("got %q %q, want %q %q", svc, inst, tc.svc, tc.inst)
			}
		})
	}
}

func TestIngestTopic(t *testing.T) {
	for _, tc := range []struct {
		name, subject, topic string
		ok                   bool
	}{
		{"one token", "ingest.orders", "orders", true},
		{"many tokens", "ingest.orders.eu:1.x@y", "orders.eu:1.x@y", true},
		{"no topic", "ingest.", "", false},
		{"empty token", "ingest.a..b", "", false},
		{"wildcard", "ingest.a.*", "", false},
		{"wrong prefix", "events.a", "", false},
		{"long token", "ingest." + string(make([]byte, 65)), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic, err := IngestTopic(tc.subject)
			if tc.ok != (err == nil) || topic != tc.topic {
				t.Fatalf("IngestTopic(%q) = %q, %v; want %q ok=%v", tc.subject, topic, err, tc.topic, tc.ok)
			}
		})
	}
}

func TestKVKey(t *testing.T) {
	if k, ok := KVKey(BucketMembers, "$KV.MEMBERS.svc.i1"); !ok || k != "svc.i1" {
		t.Fatalf("got %q %v", k, ok)
	}
	if _, ok := KVKey(BucketMembers, "$KV.STATE.x"); ok {
		t.Fatal("key of another bucket accepted")
	}
}

func TestInstanceAndRouteSubjects(t *testing.T) {
	s := InstanceSubject("platform-txn", "Kx3", "txn.get")
	if s != "inst.platform-txn.Kx3.txn.get" {
		t.Fatalf("InstanceSubject = %q", s)
	}
	svc, inst, sub, err := ParseInstanceSubject(s)
	if err != nil || svc != "platform-txn" || inst != "Kx3" || sub != "txn.get" {
		t.Fatalf("ParseInstanceSubject = %q %q %q %v", svc, inst, sub, err)
	}
	for _, bad := range []string{"inst.a.b", "inst.a", "x.a.b.c", "inst.a b.c.d", "inst..b.c"} {
		if _, _, _, err := ParseInstanceSubject(bad); !errors.Is(err, ErrBadSubject) {
			t.Errorf("ParseInstanceSubject(%q) err = %v, want ErrBadSubject", bad, err)
		}
	}
	if got, err := RouteTarget(RouteSubject("txn.get")); err != nil || got != "txn.get" {
		t.Errorf("RouteTarget = %q %v", got, err)
	}
	for _, bad := range []string{"route.", "route.a..b", "route.a.*", "route.>", "txn.get"} {
		if _, err := RouteTarget(bad); !errors.Is(err, ErrBadSubject) {
			t.Errorf("RouteTarget(%q) err = %v, want ErrBadSubject", bad, err)
		}
	}
}

func TestSubjectMatches(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"txn.get", "txn.get", true},
		{"txn.get", "txn.put", false},
		{"txn.get", "txn.get.x", false},
		{"txn.*", "txn.get", true},
		{"txn.*", "txn.get.x", false},
		{"ingest.>", "ingest.orders", true},
		{"ingest.>", "ingest.a.b.c", true},
		{"ingest.>", "ingest", false},
		{"*.get", "txn.get", true},
		{">", "a", true},
	}
	for _, tt := range tests {
		if got := SubjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}

func TestAlertSeverities(t *testing.T) {
	for _, tc := range []struct {
		severity string
		ok       bool
	}{
		{"critical", true}, {"warning", true}, {"info", true},
		{"", false}, {"page", false}, {"Critical", false}, {"post", false}, {"silence", false},
	} {
		if got := ValidAlertSeverity(tc.severity); got != tc.ok {
			t.Errorf("ValidAlertSeverity(%q) = %v, want %v", tc.severity, got, tc.ok)
		}
	}
	subs := AlertStreamSubjects()
	want := []string{"alerts.critical.>", "alerts.warning.>", "alerts.info.>"}
	if len(subs) != len(want) {
		t.Fatalf("AlertStreamSubjects() = %v, want %v", subs, want)
	}
	for i := range want {
		if subs[i] != want[i] {
			t.Fatalf("AlertStreamSubjects() = %v, want %v", subs, want)
		}
	}
}
