// Package backup saves the platform's streams and KV buckets to a directory
// and restores them: a full backup through JetStream's snapshot API
// (server-side S2, consumers included), then incremental backups that hold
// only the messages added since, as zstd-compressed segments. A manifest
// records the chain, each stream's configuration and last sequence, and the
// checksum of every file.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/jsm.go"
	"github.com/nats-io/jsm.go/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/streams"
)

// Options configure a backup.
type Options struct {
	// Incremental adds an increment to the chain already in the directory
	// instead of taking a full backup.
	Incremental bool
	// Streams names the streams to save (default: every platform stream
	// and KV bucket the server has). Increments save the streams of the
	// full backup.
	Streams []string
	// SegmentBytes closes an increment's segment once this many message
	// bytes went into it (default 64 MiB).
	SegmentBytes int64
	// Level is the zstd level of increments (default: zstd's default).
	Level zstd.EncoderLevel
	// Timeout bounds each JetStream API request (default 30s).
	Timeout time.Duration
	// Progress receives progress bars (nil: none).
	Progress io.Writer
	// Logger receives one line per stream (default: discarded).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// ErrExists is returned by a full backup into a directory that already
// holds one.
var ErrExists = errors.New("backup already exists")

// Backup takes a full backup of the platform's streams into dir, or with
// opts.Incremental an increment onto the chain already there, and returns
// the entry it added to the manifest. A full backup refuses a directory
// that holds one (ErrExists); an increment needs one (ErrNoManifest).
func Backup(ctx context.Context, nc *nats.Conn, dir string, opts Options) (*Entry, error) {
	opts.setDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var m *Manifest
	var err error
	if opts.Incremental {
		// An increment only adds to a chain that restores: a missing or
		// damaged file anywhere would make the new one useless too, so
		// check the whole chain as Verify does before adding to it.
		m, err = Verify(dir, nil)
	} else {
		m, err = LoadManifest(dir)
	}
	switch {
	case opts.Incremental && err != nil:
		return nil, fmt.Errorf("incremental backup onto %s: %w (verify it, and start a new chain with a full backup)", dir, err)
	case !opts.Incremental && err == nil:
		return nil, fmt.Errorf("full backup into %s: %w (take an incremental one, or use a new directory)", dir, ErrExists)
	case !opts.Incremental && !errors.Is(err, ErrNoManifest):
		return nil, err
	}
	var e Entry
	if opts.Incremental {
		e, err = incremental(ctx, nc, dir, m, opts)
		if err != nil {
			return nil, err
		}
		m.Backups = append(m.Backups, e)
	} else {
		e, err = full(ctx, nc, dir, opts)
		if err != nil {
			return nil, err
		}
		m = &Manifest{Version: manifestVersion, Backups: []Entry{e}}
	}
	if err := m.save(dir); err != nil {
		return nil, err
	}
	return &e, nil
}

// platformStreams returns the names of the platform's streams the server has.
func platformStreams(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var names []string
	for _, cfg := range streams.All(1) {
		_, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) || jsapi.HasCode(err, jsapi.CodeStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
		}
		names = append(names, cfg.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("no platform streams on the server")
	}
	return names, nil
}

// snapshotMeta is what jsm.go writes beside a snapshot archive.
type snapshotMeta struct {
	Config json.RawMessage `json:"config"`
	State  api.StreamState `json:"state"`
}

func full(ctx context.Context, nc *nats.Conn, dir string, opts Options) (Entry, error) {
	e := Entry{ID: 0, Kind: KindFull, Time: time.Now().UTC()}
	js, err := jetstream.New(nc)
	if err != nil {
		return e, err
	}
	names := opts.Streams
	if len(names) == 0 {
		if names, err = platformStreams(ctx, js); err != nil {
			return e, fmt.Errorf("full backup: %w", err)
		}
	}
	mgr, err := jsm.New(nc, jsm.WithTimeout(opts.Timeout))
	if err != nil {
		return e, err
	}
	for _, name := range names {
		s, err := snapshot(ctx, mgr, dir, name, opts)
		if err != nil {
			return e, fmt.Errorf("full backup: %w", err)
		}
		opts.Logger.Info("stream saved", "stream", name, "messages", s.Messages, "last_seq", s.LastSeq)
		e.Streams = append(e.Streams, s)
	}
	return e, nil
}

// snapshot saves one stream with JetStream's snapshot API into
// dir/full/<name>.
func snapshot(ctx context.Context, mgr *jsm.Manager, dir, name string, opts Options) (Stream, error) {
	s := Stream{Name: name}
	str, err := mgr.LoadStream(name)
	if err != nil {
		return s, fmt.Errorf("load stream %s: %w", name, err)
	}
	st, err := str.State()
	if err != nil {
		return s, fmt.Errorf("stream %s state: %w", name, err)
	}
	rel := path.Join("full", name)
	bar := bench.NewProgress(opts.Progress, "backup "+name, int64(st.Bytes))
	var (
		mu   sync.Mutex
		done uint64
	)
	_, err = str.SnapshotToDirectory(ctx, filepath.Join(dir, filepath.FromSlash(rel)),
		jsm.SnapshotConsumers(),
		jsm.SnapshotNotify(func(p jsm.SnapshotProgress) {
			mu.Lock()
			defer mu.Unlock()
			if n := p.UncompressedBytesReceived(); n > done {
				bar.Add(int64(n - done))
				done = n
			}
		}))
	bar.Stop()
	if err != nil {
		return s, fmt.Errorf("snapshot stream %s: %w", name, err)
	}
	data, err := jsm.SnapshotDataPath(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return s, err
	}
	for _, f := range []string{path.Join(rel, filepath.Base(data)), path.Join(rel, jsm.SnapshotMetaFile)} {
		fr, err := describe(dir, f)
		if err != nil {
			return s, err
		}
		s.Files = append(s.Files, fr)
	}
	meta, err := readSnapshotMeta(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return s, err
	}
	s.Config = meta.Config
	s.FirstSeq, s.LastSeq = meta.State.FirstSeq, meta.State.LastSeq
	s.Messages, s.Bytes = meta.State.Msgs, meta.State.Bytes
	return s, nil
}

func readSnapshotMeta(dir string) (snapshotMeta, error) {
	var m snapshotMeta
	b, err := os.ReadFile(filepath.Join(dir, jsm.SnapshotMetaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("snapshot meta in %s: %w", dir, err)
	}
	return m, nil
}

func incremental(ctx context.Context, nc *nats.Conn, dir string, m *Manifest, opts Options) (Entry, error) {
	id := m.Backups[len(m.Backups)-1].ID + 1
	e := Entry{ID: id, Kind: KindIncremental, Time: time.Now().UTC()}
	js, err := jetstream.New(nc)
	if err != nil {
		return e, err
	}
	for _, fs := range m.Backups[0].Streams {
		last, _ := m.LastSeq(fs.Name)
		s, err := increment(ctx, js, dir, fmt.Sprintf("inc-%04d", id), fs.Name, last, opts)
		if err != nil {
			return e, fmt.Errorf("incremental backup: %w", err)
		}
		opts.Logger.Info("stream increment saved", "stream", fs.Name, "messages", s.Messages, "first_seq", s.FirstSeq, "last_seq", s.LastSeq)
		e.Streams = append(e.Streams, s)
	}
	return e, nil
}

// increment saves the messages of one stream after sequence last into
// zstd segments under dir/inc.
func increment(ctx context.Context, js jetstream.JetStream, dir, inc, name string, last uint64, opts Options) (s Stream, err error) {
	s = Stream{Name: name, FirstSeq: last + 1, LastSeq: last}
	str, err := js.Stream(ctx, name)
	if err != nil {
		return s, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return s, fmt.Errorf("stream %s info: %w", name, err)
	}
	target := info.State.LastSeq
	if target <= last {
		return s, nil
	}
	// An ephemeral consumer without acks, on memory, removed by the server
	// if this process dies; NumPending tells when everything is read.
	cons, err := str.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       last + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return s, fmt.Errorf("read stream %s from %d: %w", name, last+1, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.Timeout)
		defer cancel()
		_ = str.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	bar := bench.NewProgress(opts.Progress, "backup "+name, int64(target-last))
	defer bar.Stop()

	var seg *segmentWriter
	defer func() {
		if seg != nil {
			seg.abort()
		}
	}()
	closeSeg := func() error {
		f, err := seg.close()
		seg = nil
		if err != nil {
			return err
		}
		s.Files = append(s.Files, f)
		return nil
	}
	write := func(msg jetstream.Msg) (pending uint64, err error) {
		md, err := msg.Metadata()
		if err != nil {
			return 0, fmt.Errorf("read stream %s: %w", name, err)
		}
		if seg == nil {
			rel := path.Join(inc, fmt.Sprintf("%s-%06d.zst", name, len(s.Files)+1))
			if seg, err = createSegment(dir, rel, opts.Level); err != nil {
				return 0, fmt.Errorf("segment %s: %w", rel, err)
			}
		}
		r := record{Seq: md.Sequence.Stream, Time: md.Timestamp.UnixNano(), Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()}
		if err := seg.write(&r); err != nil {
			return 0, err
		}
		s.Messages++
		s.Bytes += r.size()
		s.LastSeq = r.Seq
		bar.Add(1)
		if seg.raw >= opts.SegmentBytes {
			if err := closeSeg(); err != nil {
				return 0, err
			}
		}
		return md.NumPending, nil
	}
	for s.LastSeq < target {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		// FetchNoWait returns what is there now instead of waiting for a
		// full batch; the loop ends on NumPending, not on a timeout.
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return s, fmt.Errorf("read stream %s: %w", name, err)
		}
		n, pending := 0, uint64(1)
		for msg := range batch.Messages() {
			if pending, err = write(msg); err != nil {
				return s, err
			}
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return s, fmt.Errorf("read stream %s: %w", name, err)
		}
		if n > 0 && pending == 0 {
			break
		}
		if n == 0 {
			// Nothing came: either the rest up to target was deleted
			// before we read it, or the consumer is not delivering yet.
			ci, err := cons.Info(ctx)
			if err != nil {
				return s, fmt.Errorf("read stream %s: %w", name, err)
			}
			if ci.NumPending == 0 {
				break
			}
			if err := jsapi.Sleep(ctx, 50*time.Millisecond); err != nil {
				return s, err
			}
		}
	}
	if seg != nil {
		if err := closeSeg(); err != nil {
			return s, err
		}
	}
	return s, nil
}
