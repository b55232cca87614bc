package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// ManifestFile is the manifest's name inside a backup directory.
const ManifestFile = "manifest.json"

// manifestVersion is the layout this package writes and reads.
const manifestVersion = 1

// Kinds of backup in a chain.
const (
	KindFull        = "full"
	KindIncremental = "incremental"
)

// Manifest describes a backup directory: one full backup followed by
// incremental ones, in the order they were taken and must be restored.
type Manifest struct {
	// Version is the directory layout's version.
	Version int `json:"version"`
	// Backups is the chain: Backups[0] is the full backup.
	Backups []Entry `json:"backups"`
}

// Entry is one backup of the chain.
type Entry struct {
	// ID numbers the backups of a chain from 0 (the full one).
	ID int `json:"id"`
	// Kind is KindFull or KindIncremental.
	Kind string `json:"kind"`
	// Time is when the backup started.
	Time time.Time `json:"time"`
	// Streams holds what was saved of each stream.
	Streams []Stream `json:"streams"`
}

// Stream is what one backup saved of one stream.
type Stream struct {
	// Name is the stream's name (KV buckets are the streams KV_<bucket>).
	Name string `json:"name"`
	// Config is the stream's configuration as the server reported it
	// (full backups only; restore takes it from the snapshot's own meta).
	Config json.RawMessage `json:"config,omitempty"`
	// FirstSeq is the first stream sequence this backup holds (for an
	// increment, the sequence it started reading from).
	FirstSeq uint64 `json:"first_seq"`
	// LastSeq is the last stream sequence this backup covers; the next
	// increment reads from LastSeq+1.
	LastSeq uint64 `json:"last_seq"`
	// Messages counts the messages saved.
	Messages uint64 `json:"messages"`
	// Bytes counts the messages' uncompressed size as the server reports
	// it (full) or subject, headers and data (increments).
	Bytes uint64 `json:"bytes"`
	// Files are the files holding the data, relative to the backup
	// directory, in restore order.
	Files []File `json:"files"`
}

// File is one file of a backup with its size and checksum.
type File struct {
	// Path is relative to the backup directory, with forward slashes.
	Path string `json:"path"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the file's checksum, hex encoded.
	SHA256 string `json:"sha256"`
	// Messages counts the messages in a segment (0 for snapshot files).
	Messages uint64 `json:"messages,omitempty"`
}

// Stream returns the entry's record of the named stream.
func (e *Entry) Stream(name string) (Stream, bool) {
	for _, s := range e.Streams {
		if s.Name == name {
			return s, true
		}
	}
	return Stream{}, false
}

// LastSeq returns the last sequence of stream covered by the chain, and
// whether the chain holds the stream at all.
func (m *Manifest) LastSeq(stream string) (uint64, bool) {
	var last uint64
	found := false
	for i := range m.Backups {
		if s, ok := m.Backups[i].Stream(stream); ok {
			last, found = max(last, s.LastSeq), true
		}
	}
	return last, found
}

// Size returns the bytes on disk of the entry's files.
func (e *Entry) Size() int64 {
	var n int64
	for _, s := range e.Streams {
		for _, f := range s.Files {
			n += f.Size
		}
	}
	return n
}

// ErrNoManifest is returned when a directory holds no backup.
var ErrNoManifest = errors.New("no backup manifest")

// LoadManifest reads dir's manifest. It returns an error wrapping
// ErrNoManifest when there is none.
func LoadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load manifest in %s: %w", dir, ErrNoManifest)
	}
	if err != nil {
		return nil, fmt.Errorf("load manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("load manifest %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if m.Version != manifestVersion {
		return nil, fmt.Errorf("load manifest: version %d, this build reads %d", m.Version, manifestVersion)
	}
	if len(m.Backups) == 0 || m.Backups[0].Kind != KindFull {
		return nil, fmt.Errorf("load manifest: the chain does not start with a full backup")
	}
	// Restore and verify open every file the manifest names: one that
	// points outside the backup directory (an absolute path, "..", a
	// backslash) is refused before anything is read.
	for _, e := range m.Backups {
		for _, s := range e.Streams {
			for _, f := range s.Files {
				if !localPath(f.Path) {
					return nil, fmt.Errorf("load manifest: stream %s names file %q, which is not a path inside the backup directory", s.Name, f.Path)
				}
			}
		}
	}
	return &m, nil
}

// localPath reports whether p, with forward slashes as the manifest
// writes them, names a file inside the backup directory on any system.
func localPath(p string) bool {
	return p != "" && !strings.Contains(p, `\`) && filepath.IsLocal(filepath.FromSlash(p)) && path.Clean(p) == p
}

// save writes the manifest atomically: a crash leaves the old one or the
// new one, never half of either.
func (m *Manifest) save(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".manifest-*")
	if err != nil {
		return fmt.Errorf("save manifest: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save manifest: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save manifest: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save manifest: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, ManifestFile)); err != nil {
		return fmt.Errorf("save manifest: %w", err)
	}
	return nil
}

// describe returns the File record of dir/rel: size and checksum.
func describe(dir, rel string) (File, error) {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("checksum %s: %w", rel, err)
	}
	return File{Path: rel, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
