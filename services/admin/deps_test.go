package admin_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDoesNotLinkServer keeps the services, and the packages they share,
// free of the NATS server: they run against any NATS cluster, and only the
// binary, cluster/ and benchmarks embed a server.
func TestDoesNotLinkServer(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies with")
	}
	pkgs := []string{
		"github.com/platform/platform/services/admin",
		"github.com/platform/platform/services/alerting",
		"github.com/platform/platform/services/balancer",
		"github.com/platform/platform/services/consume",
		"github.com/platform/platform/services/detector",
		"github.com/platform/platform/services/replicator",
		"github.com/platform/platform/services/txn",
		"github.com/platform/platform/service",
		"github.com/platform/platform/streams",
	}
	for _, pkg := range pkgs {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "github.com/nats-io/nats-server/v2/server" {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}
