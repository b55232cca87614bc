package backup

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestManifestRefusesPathsOutsideTheBackup: a manifest is read from the
// backup directory, which may come from anywhere; a file it names that
// is not inside that directory would make restore or verify read any
// file the process can.
func TestManifestRefusesPathsOutsideTheBackup(t *testing.T) {
	write := func(t *testing.T, p string) string {
		t.Helper()
		dir := t.TempDir()
		m := Manifest{Version: manifestVersion, Backups: []Entry{{Kind: KindFull, Streams: []Stream{{Name: "EVENTS", Files: []File{{Path: p}}}}}}}
		b, err := json.Marshal(m)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o600))
		return dir
	}
	for _, p := range []string{"../secret", "full/../../x", "/etc/passwd", `full\..\x`, "", "full//a", "./full/a", "full/a/"} {
		_, err := LoadManifest(write(t, p))
		require.ErrorContains(t, err, "not a path inside the backup directory", "path %q", p)
	}
	m, err := LoadManifest(write(t, "full/EVENTS/stream.tar.s2"))
	require.NoError(t, err)
	require.Equal(t, "full/EVENTS/stream.tar.s2", m.Backups[0].Streams[0].Files[0].Path)
}
