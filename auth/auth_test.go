package auth_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/streams"
)

func TestInitWritesUsableFile(t *testing.T) {
	dir := t.TempDir()
	path, err := auth.Init(dir)
	require.NoError(t, err)
	f, err := auth.Load(path)
	require.NoError(t, err)
	require.Len(t, f.Users, len(auth.Roles))
	creds, err := f.ServiceCredentials()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "platform.nk"), creds.SeedFile)
	st, err := os.Stat(creds.SeedFile)
	require.NoError(t, err)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("seed file mode %v, want 0600", st.Mode().Perm())
	}
	_, err = auth.Init(dir)
	require.ErrorContains(t, err, "already exists", "init never overwrites")
}

func TestLoadRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"no users", `{"users":[]}`, "no users"},
		{"unknown role", `{"users":[{"name":"a","role":"root","password":"x"}]}`, "unknown role"},
		{"two secrets", `{"users":[{"name":"a","role":"admin","password":"x","nkey":"UA"}]}`, "exactly one"},
		{"bad nkey", `{"users":[{"name":"a","role":"admin","nkey":"SUAxyz"}]}`, "not a user public nkey"},
		{"name not one subject token", `{"users":[{"name":"a.b","role":"reader","password":"x"}]}`, "one subject token"},
		{"wildcard name", `{"users":[{"name":">","role":"producer","password":"x"}]}`, "one subject token"},
		{"duplicate", `{"users":[{"name":"a","role":"admin","password":"x"},{"name":"a","role":"reader","password":"y"}]}`, "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "users.json")
			require.NoError(t, os.WriteFile(p, []byte(tc.body), 0o600))
			_, err := auth.Load(p)
			require.ErrorContains(t, err, tc.want)
		})
	}
	for _, r := range auth.Roles {
		_, err := auth.RolePermissions(r, "u")
		require.NoError(t, err, r)
	}
	_, err := auth.RolePermissions("root", "u")
	require.Error(t, err)
}

// TestRouteMirrorsDirect: every role may publish route.<subject> exactly
// when it may publish <subject>, for the balancer forwards one to the
// other on a connection of its own.
func TestRouteMirrorsDirect(t *testing.T) {
	may := func(p auth.Permissions, subject string) bool {
		for _, d := range p.PublishDeny {
			if streams.SubjectMatches(d, subject) {
				return false
			}
		}
		if len(p.PublishAllow) == 0 {
			return true
		}
		for _, a := range p.PublishAllow {
			if streams.SubjectMatches(a, subject) {
				return true
			}
		}
		return false
	}
	subjects := []string{
		"txn.get", "txn.commit", "ingest.orders", "balancer.status", "alerts.fanout", "demo.echo",
		"consume.g.next", "hb.platform-txn.x", "events.orders.1",
	}
	wantDirect := map[string][]string{
		auth.RoleAdmin:    subjects,
		auth.RoleService:  subjects,
		auth.RoleProducer: {"txn.get", "txn.commit", "ingest.orders"},
		auth.RoleReader:   {"consume.g.next"},
	}
	for _, role := range auth.Roles {
		t.Run(role, func(t *testing.T) {
			p, err := auth.RolePermissions(role, "u")
			require.NoError(t, err)
			for _, s := range subjects {
				direct, routed := may(p, s), may(p, streams.RouteSubject(s))
				if want := slices.Contains(wantDirect[role], s); direct != want {
					t.Errorf("%s may publish %s: %v, want %v", role, s, direct, want)
				}
				if routed != direct {
					t.Errorf("%s may publish %s: %v, but route.%s: %v", role, s, direct, s, routed)
				}
			}
			// What it may not do directly it may not ask the balancer to do.
			for _, s := range []string{"$JS.API.STREAM.DELETE.EVENTS", "$SYS.REQ.SERVER.PING"} {
				if !may(p, s) && may(p, streams.RouteSubject(s)) {
					t.Errorf("%s may not publish %s but may publish route.%s", role, s, s)
				}
			}
		})
	}
}
