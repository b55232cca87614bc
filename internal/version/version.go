// Package version says which build of the platform is running: the one
// version every service registers with (what `nats micro ls` shows) and
// `platform version` prints.
package version

import (
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
)

// Base is the version of a build that was given none: a plain `go build`
// or `go run` of a checkout.
const Base = "0.1.0"

// version is set at build time:
//
//	go build -ldflags "-X github.com/platform/platform/internal/version.version=1.2.3" ./cmd/platform
//
// A leading "v" is dropped.
var version string

// semver is the form NATS micro services require (semver.org's pattern).
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// pseudo matches the commit part of a Go pseudo-version
// (v0.0.0-20240102150405-abcdef123456), which says less than Base with the
// revision does.
var pseudo = regexp.MustCompile(`\d{14}-[0-9a-f]{12}`)

var resolve = sync.OnceValue(func() string {
	info, _ := debug.ReadBuildInfo()
	return choose(version, info)
})

// String returns the binary's version, a semantic version without a
// leading "v": the one set at build time; else the module's version when
// the binary was built from a tagged release (`go install ...@v1.2.3`);
// else Base, with the VCS revision as build metadata when Go recorded it
// (0.1.0+0123456789ab, .dirty for a modified tree).
func String() string { return resolve() }

// Valid reports whether v can be a NATS micro service version.
func Valid(v string) bool { return semver.MatchString(v) }

func choose(set string, info *debug.BuildInfo) string {
	if set != "" {
		return strings.TrimPrefix(set, "v")
	}
	if info == nil {
		return Base
	}
	if v := strings.TrimPrefix(info.Main.Version, "v"); Valid(v) && !pseudo.MatchString(v) {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return Base
	}
	v := Base + "+" + rev[:min(12, len(rev))]
	if dirty {
		v += ".dirty"
	}
	return v
}
