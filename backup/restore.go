package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jsm.go"
	"github.com/nats-io/jsm.go/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/internal/jsapi"
)

// RestoreOptions configure a restore.
type RestoreOptions struct {
	// Replace deletes streams that already exist before restoring them;
	// without it Restore refuses (ErrStreamsExist) and changes nothing.
	Replace bool
	// Replicas overrides the replica count of every restored stream
	// (default: as backed up), for a cluster of another size.
	Replicas int
	// Timeout bounds each JetStream API request (default 30s).
	Timeout time.Duration
	// Progress receives progress bars (nil: none).
	Progress io.Writer
	// Logger receives one line per stream (default: discarded).
	Logger *slog.Logger
}

// ErrStreamsExist is returned when a stream to restore already exists and
// RestoreOptions.Replace is not set.
var ErrStreamsExist = errors.New("streams already exist")

// RestoreResult counts what a restore did.
type RestoreResult struct {
	// Streams is how many streams were restored.
	Streams int
	// Snapshot counts the messages restored from the full backup.
	Snapshot uint64
	// Replayed counts the messages published from increments.
	Replayed uint64
	// Skipped counts increment messages the snapshot already held (written
	// while the snapshot was being taken).
	Skipped uint64
	// Deduplicated counts increment messages whose Nats-Msg-Id the restored
	// stream had already seen; they were published without the id.
	Deduplicated uint64
}

// Restore restores the chain in dir into the cluster nc is connected to:
// every stream from its snapshot, then each increment's messages in
// order. The whole chain is verified first, so a damaged or missing file
// stops the restore before it changes anything.
//
// Messages from increments are published again: they keep their subject,
// data and headers, except the Nats-Expected-* and Nats-Batch-* headers
// that instruct the server at publish time (JetStream drops them the same
// way when it mirrors or sources a stream), and they get new sequences and
// timestamps. A KV bucket's revisions only move forward: when the chain
// (or a stream replaced) went past the snapshot, the bucket is renumbered
// to start after the highest sequence seen (moveForward), so a client's
// commit against a revision read before the restore is refused.
func Restore(ctx context.Context, nc *nats.Conn, dir string, opts RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := Verify(dir, nil)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	full := m.Backups[0]
	var existing []string
	// floor is, per stream, the highest sequence anyone may have seen: the
	// chain's last, or the last of the stream this restore replaces.
	floor := map[string]uint64{}
	for _, s := range full.Streams {
		floor[s.Name], _ = m.LastSeq(s.Name)
		str, err := js.Stream(ctx, s.Name)
		switch {
		case err == nil:
			existing = append(existing, s.Name)
			floor[s.Name] = max(floor[s.Name], str.CachedInfo().State.LastSeq)
		case errors.Is(err, jetstream.ErrStreamNotFound) || jsapi.HasCode(err, jsapi.CodeStreamNotFound):
		default:
			return res, fmt.Errorf("restore: look up stream %s: %w", s.Name, err)
		}
	}
	if len(existing) > 0 && !opts.Replace {
		return res, fmt.Errorf("restore: %w: %s (restore into an empty cluster, or replace them)", ErrStreamsExist, strings.Join(existing, ", "))
	}
	for _, name := range existing {
		if err := js.DeleteStream(ctx, name); err != nil {
			return res, fmt.Errorf("restore: delete stream %s: %w", name, err)
		}
	}
	mgr, err := jsm.New(nc, jsm.WithTimeout(opts.Timeout))
	if err != nil {
		return res, err
	}
	covered := map[string]uint64{}
	for _, s := range full.Streams {
		st, err := restoreSnapshot(ctx, mgr, dir, s, opts)
		if err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		covered[s.Name] = st.LastSeq
		res.Streams++
		res.Snapshot += st.Msgs
		if IsBucket(s.Name) && floor[s.Name] > st.LastSeq {
			if err := moveForward(ctx, js, s.Name, floor[s.Name], opts); err != nil {
				return res, fmt.Errorf("restore: %w", err)
			}
		}
		opts.Logger.Info("stream restored", "stream", s.Name, "messages", st.Msgs, "last_seq", st.LastSeq)
	}
	for _, e := range m.Backups[1:] {
		for _, s := range e.Streams {
			if s.Messages == 0 {
				continue
			}
			if err := replay(ctx, js, dir, e.ID, s, covered, &res, opts); err != nil {
				return res, fmt.Errorf("restore: backup %d: %w", e.ID, err)
			}
		}
	}
	return res, nil
}

// IsBucket reports whether stream is a KV bucket's, whose sequences are
// the revisions clients commit against.
func IsBucket(stream string) bool { return strings.HasPrefix(stream, "KV_") }

// moveForward renumbers a bucket restored from its snapshot so that every
// revision it holds, and every one an increment replays after, is above
// floor. The snapshot keeps the sequences it was taken with and a replay
// continues from them, so without this a key restored from an increment
// could come back at a revision a client read before the restore for
// another value, and that client's stale commit would succeed: a lost
// update. Revisions only move forward across a restore.
//
// The restored messages are saved to a temporary segment, the stream is
// created again empty with FirstSeq past floor, and they are published
// again in order; their data and headers are kept, their timestamps are
// new, and consumers restored with the snapshot are dropped (a bucket's
// are its watchers', which come back on their own).
func moveForward(ctx context.Context, js jetstream.JetStream, name string, floor uint64, opts RestoreOptions) error {
	tmp, err := os.MkdirTemp("", "platform-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bo := Options{Timeout: opts.Timeout, Logger: opts.Logger}
	bo.setDefaults()
	saved, err := increment(ctx, js, tmp, "forward", name, 0, bo)
	if err != nil {
		return fmt.Errorf("move %s past revision %d: %w", name, floor, err)
	}
	str, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("move %s past revision %d: %w", name, floor, err)
	}
	cfg := str.CachedInfo().Config
	cfg.FirstSeq = floor + 1
	if err := js.DeleteStream(ctx, name); err != nil {
		return fmt.Errorf("move %s past revision %d: %w", name, floor, err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		return fmt.Errorf("move %s past revision %d: create it again: %w", name, floor, err)
	}
	var res RestoreResult
	if err := replay(ctx, js, tmp, 0, saved, map[string]uint64{}, &res, opts); err != nil {
		return fmt.Errorf("move %s past revision %d: %w", name, floor, err)
	}
	opts.Logger.Info("bucket revisions moved forward", "stream", name, "messages", res.Replayed, "first_revision", floor+1)
	return nil
}

func restoreSnapshot(ctx context.Context, mgr *jsm.Manager, dir string, s Stream, opts RestoreOptions) (*api.StreamState, error) {
	sdir := filepath.Join(dir, "full", s.Name)
	var ropts []jsm.SnapshotOption
	if opts.Replicas > 0 {
		var cfg api.StreamConfig
		if err := json.Unmarshal(s.Config, &cfg); err != nil {
			return nil, fmt.Errorf("stream %s config: %w", s.Name, err)
		}
		cfg.Replicas = opts.Replicas
		ropts = append(ropts, jsm.RestoreConfiguration(cfg))
	}
	var size int64
	for _, f := range s.Files {
		if !strings.HasSuffix(f.Path, jsm.SnapshotMetaFile) {
			size = f.Size
		}
	}
	bar := bench.NewProgress(opts.Progress, "restore "+s.Name, size)
	var (
		mu   sync.Mutex
		sent uint64
	)
	ropts = append(ropts, jsm.RestoreNotify(func(p jsm.RestoreProgress) {
		mu.Lock()
		defer mu.Unlock()
		if n := p.BytesSent(); n > sent {
			bar.Add(int64(n - sent))
			sent = n
		}
	}))
	_, st, err := mgr.RestoreSnapshotFromDirectory(ctx, s.Name, sdir, ropts...)
	bar.Stop()
	if err != nil {
		return nil, fmt.Errorf("restore stream %s from snapshot: %w", s.Name, err)
	}
	return st, nil
}

// replay publishes one increment's messages of one stream, in order,
// skipping those the stream already holds.
func replay(ctx context.Context, js jetstream.JetStream, dir string, id int, s Stream, covered map[string]uint64, res *RestoreResult, opts RestoreOptions) error {
	bar := bench.NewProgress(opts.Progress, fmt.Sprintf("replay %s #%d", s.Name, id), int64(s.Messages))
	defer bar.Stop()
	const window = 256
	type pending struct {
		r   record
		ack jetstream.PubAckFuture
	}
	var inflight []pending
	// settle waits for acknowledgements until at most keep are in flight;
	// a duplicate is published again, synchronously, without its id.
	settle := func(keep int) error {
		for len(inflight) > keep {
			p := inflight[0]
			inflight = inflight[1:]
			select {
			case ack := <-p.ack.Ok():
				if ack.Duplicate {
					msg := outMsg(&p.r)
					msg.Header.Del(jetstream.MsgIDHeader)
					if _, err := js.PublishMsg(ctx, msg); err != nil {
						return fmt.Errorf("publish %s (sequence %d) again without its id: %w", p.r.Subject, p.r.Seq, err)
					}
					res.Deduplicated++
				}
			case err := <-p.ack.Err():
				return fmt.Errorf("publish %s (sequence %d): %w", p.r.Subject, p.r.Seq, err)
			case <-ctx.Done():
				return ctx.Err()
			}
			bar.Add(1)
		}
		return nil
	}
	for _, f := range s.Files {
		err := readSegment(dir, f, func(r *record) error {
			if r.Seq <= covered[s.Name] {
				res.Skipped++
				bar.Add(1)
				return nil
			}
			covered[s.Name] = r.Seq
			ack, err := js.PublishMsgAsync(outMsg(r))
			if err != nil {
				return fmt.Errorf("publish %s (sequence %d): %w", r.Subject, r.Seq, err)
			}
			inflight = append(inflight, pending{r: *r, ack: ack})
			res.Replayed++
			return settle(window)
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", s.Name, err)
		}
	}
	if err := settle(0); err != nil {
		return fmt.Errorf("stream %s: %w", s.Name, err)
	}
	return nil
}

// outMsg builds the message that restores r, without the headers that are
// instructions to the server at publish time.
func outMsg(r *record) *nats.Msg {
	msg := &nats.Msg{Subject: r.Subject, Data: r.Data}
	for k, vs := range r.Header {
		if IsPublishDirective(k) {
			continue
		}
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header[k] = append([]string(nil), vs...)
	}
	return msg
}

// IsPublishDirective reports whether a header instructs JetStream at
// publish time (an expected last sequence, an atomic batch) rather than
// describing the message; restored increments leave these out.
func IsPublishDirective(header string) bool {
	h := strings.ToLower(header)
	return strings.HasPrefix(h, "nats-expected-") || strings.HasPrefix(h, "nats-batch-")
}
