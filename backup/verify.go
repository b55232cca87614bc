package backup

import (
	"fmt"
	"io"

	"github.com/platform/platform/bench"
)

// Verify checks a backup directory without a server: the manifest reads,
// the chain starts with a full backup and every increment starts where the
// one before it ended, every file exists with its recorded size and
// checksum, and every segment decodes to the recorded number of messages.
// The first problem found is returned, naming the file; errors about files
// wrap ErrDamaged. progress (nil: none) receives a bar over the files.
func Verify(dir string, progress io.Writer) (*Manifest, error) {
	m, err := LoadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := m.checkChain(); err != nil {
		return m, err
	}
	var files int64
	for _, e := range m.Backups {
		for _, s := range e.Streams {
			files += int64(len(s.Files))
		}
	}
	bar := bench.NewProgress(progress, "verify", files)
	defer bar.Stop()
	for _, e := range m.Backups {
		for _, s := range e.Streams {
			for _, f := range s.Files {
				if e.Kind == KindFull {
					err = checkFile(dir, f)
				} else {
					err = readSegment(dir, f, nil)
				}
				if err != nil {
					return m, fmt.Errorf("verify backup %d (%s), stream %s: %w", e.ID, e.Kind, s.Name, err)
				}
				bar.Add(1)
			}
		}
	}
	return m, nil
}

// checkChain checks that the backups are numbered in order, that only the
// first is full, and that each increment of a stream starts right after
// the sequence the chain had covered.
func (m *Manifest) checkChain() error {
	last := map[string]uint64{}
	for i, e := range m.Backups {
		if e.ID != i {
			return fmt.Errorf("chain broken: backup %d is numbered %d (a backup is missing)", i, e.ID)
		}
		want := KindIncremental
		if i == 0 {
			want = KindFull
		}
		if e.Kind != want {
			return fmt.Errorf("chain broken: backup %d is %q, want %q", i, e.Kind, want)
		}
		for _, s := range e.Streams {
			if i == 0 {
				if len(s.Files) != 2 {
					return fmt.Errorf("chain broken: full backup of %s has %d files, want snapshot and meta", s.Name, len(s.Files))
				}
				last[s.Name] = s.LastSeq
				continue
			}
			prev, ok := last[s.Name]
			if !ok {
				return fmt.Errorf("chain broken: backup %d has stream %s, which the full backup lacks", i, s.Name)
			}
			if s.FirstSeq != prev+1 {
				return fmt.Errorf("chain broken: backup %d of %s starts at sequence %d, the chain ends at %d", i, s.Name, s.FirstSeq, prev)
			}
			var msgs uint64
			for _, f := range s.Files {
				msgs += f.Messages
			}
			if msgs != s.Messages {
				return fmt.Errorf("chain broken: backup %d of %s lists %d messages in its segments, %d in all", i, s.Name, msgs, s.Messages)
			}
			last[s.Name] = max(prev, s.LastSeq)
		}
	}
	return nil
}
