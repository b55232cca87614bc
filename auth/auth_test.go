package auth_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/auth"
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
