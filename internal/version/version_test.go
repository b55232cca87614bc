package version

import (
	"runtime/debug"
	"testing"
)

func TestChoose(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name string
		set  string
		info *debug.BuildInfo
		want string
	}{
		{"set at build time", "1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}}, "1.2.3"},
		{"set with a v", "v1.2.3-rc.1", nil, "1.2.3-rc.1"},
		{"no build info", "", nil, Base},
		{"go run of a checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Base},
		{"tagged release", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "1.4.0"},
		{"untagged commit", "", &debug.BuildInfo{
			Main:     debug.Module{Version: "v0.0.0-20261130163200-c4e7df9abcde"},
			Settings: vcs("c4e7df9abcde0123456789", "false"),
		}, Base + "+c4e7df9abcde"},
		{"modified tree", "", &debug.BuildInfo{
			Main:     debug.Module{Version: "(devel)"},
			Settings: vcs("c4e7df9abcde0123456789", "true"),
		}, Base + "+c4e7df9abcde.dirty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := choose(tt.set, tt.info)
			if got != tt.want {
				t.Errorf("version = %q, want %q", got, tt.want)
			}
			if !Valid(got) {
				t.Errorf("version %q is not a semantic version", got)
			}
		})
	}
}

func TestStringIsValid(t *testing.T) {
	if v := String(); !Valid(v) {
		t.Fatalf("String() = %q, not a semantic version NATS micro accepts", v)
	}
}
