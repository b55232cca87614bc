package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/backup"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// TestRunRestoreFrom starts a new platform from a backup chain: the data
// is restored before any service starts, so the first txn.get after ready
// sees it; a data directory that holds anything, or a damaged chain, is
// refused before a node starts.
func TestRunRestoreFrom(t *testing.T) {
	ctx := clustertest.Context(t, 2*time.Minute)
	_, nc, js := clustertest.Provisioned(t, 1)
	state, err := js.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	_, err = state.Put(ctx, "acct.full", []byte("in the full backup"))
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = backup.Backup(ctx, nc, dir, backup.Options{})
	require.NoError(t, err)
	_, err = state.Put(ctx, "acct.inc", []byte("in the increment"))
	require.NoError(t, err)
	_, err = backup.Backup(ctx, nc, dir, backup.Options{Incremental: true})
	require.NoError(t, err)

	t.Run("refused over data", func(t *testing.T) {
		data := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(data, "something"), nil, 0o600))
		opts := embedded(t, 1, data)
		opts.RestoreFrom = dir
		_, err := app.New(opts)
		require.ErrorContains(t, err, "already holds data")
	})
	t.Run("refused from a damaged chain", func(t *testing.T) {
		opts := embedded(t, 1, t.TempDir())
		opts.RestoreFrom = t.TempDir() // no manifest
		_, err := app.New(opts)
		require.ErrorContains(t, err, "--restore-from")
	})

	opts := embedded(t, 1, filepath.Join(t.TempDir(), "new"))
	opts.RestoreFrom = dir
	p := startApp(t, opts)
	rnc, _ := connect(t, p.app.Cluster().ClientURLs())
	b, err := json.Marshal(txn.GetRequest{Keys: []string{"acct.full", "acct.inc"}})
	require.NoError(t, err)
	m, err := rnc.Request("txn.get", b, 10*time.Second)
	require.NoError(t, err)
	var got txn.GetResponse
	require.NoError(t, json.Unmarshal(m.Data, &got), "txn.get answered %s", m.Data)
	for k, want := range map[string]string{"acct.full": "in the full backup", "acct.inc": "in the increment"} {
		v := got.Values[k]
		if v == nil || v.Value == nil || *v.Value != want {
			t.Errorf("txn.get %s on the restored platform = %+v, want %q", k, v, want)
		}
	}
}
