package backup_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
	"github.com/platform/platform/backup"
	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// writeRound adds events with headers and transactional KV changes, as the
// replicator and txn services would.
func writeRound(t *testing.T, ctx context.Context, nc *nats.Conn, js jetstream.JetStream, round, events int) {
	t.Helper()
	for i := range events {
		msg := nats.NewMsg(streams.EventSubject(fmt.Sprintf("orders.r%d", round)))
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("r%d-%d", round, i))
		msg.Header.Set("Round", fmt.Sprint(round))
		msg.Header.Add("Tag", "a")
		msg.Header.Add("Tag", "b")
		msg.Data = fmt.Appendf(nil, `{"round":%d,"i":%d}`, round, i)
		_, err := js.PublishMsg(ctx, msg)
		require.NoError(t, err)
	}
	store, err := txn.NewStore(nc)
	require.NoError(t, err)
	for i := range 5 {
		// Two-key transactions travel as atomic batches with expectations.
		err := txn.Run(ctx, store, func(tx *txn.Tx) error {
			a, b := fmt.Sprintf("acct.%d", i), fmt.Sprintf("acct.%d", (i+1)%5)
			if err := tx.Put(a, fmt.Appendf(nil, "r%d-a", round)); err != nil {
				return err
			}
			return tx.Put(b, fmt.Appendf(nil, "r%d-b", round))
		})
		require.NoError(t, err)
	}
	if round > 0 {
		_, err := store.Commit(ctx, txn.Commit{Deletes: []string{fmt.Sprintf("gone.%d", round-1)}})
		require.NoError(t, err)
	}
	_, err = store.Commit(ctx, txn.Commit{Writes: map[string][]byte{fmt.Sprintf("gone.%d", round): []byte("x")}})
	require.NoError(t, err)
}

// seen is a stored message as the test compares it.
type seen struct {
	Subject string
	Header  nats.Header
	Data    string
}

// dump reads every message of a stream in order.
func dump(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) []seen {
	t.Helper()
	s, err := js.Stream(ctx, name)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	var out []seen
	for uint64(len(out)) < info.State.Msgs {
		m, err := clustertest.Next(c, 5*time.Second)
		require.NoError(t, err, "read %s after %d of %d", name, len(out), info.State.Msgs)
		h := nats.Header{}
		for k, v := range m.Headers() {
			if !backup.IsPublishDirective(k) {
				h[k] = v
			}
		}
		out = append(out, seen{Subject: m.Subject(), Header: h, Data: string(m.Data())})
	}
	return out
}

func kvView(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket string) map[string]string {
	t.Helper()
	kv, err := js.KeyValue(ctx, bucket)
	require.NoError(t, err)
	keys, err := kv.ListKeys(ctx)
	require.NoError(t, err)
	view := map[string]string{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		require.NoError(t, err)
		view[k] = string(e.Value())
	}
	return view
}

func TestFullAndIncrementsRestoreOnFreshCluster(t *testing.T) {
	ctx := clustertest.Context(t, 3*time.Minute)
	_, nc, js := clustertest.Provisioned(t, 1)
	dir := t.TempDir()

	writeRound(t, ctx, nc, js, 0, 200)
	full, err := backup.Backup(ctx, nc, dir, backup.Options{})
	require.NoError(t, err)
	require.Equal(t, backup.KindFull, full.Kind)
	_, err = backup.Backup(ctx, nc, dir, backup.Options{})
	require.ErrorIs(t, err, backup.ErrExists, "a second full backup into the same directory")

	for round := 1; round <= 2; round++ {
		writeRound(t, ctx, nc, js, round, 50)
		inc, err := backup.Backup(ctx, nc, dir, backup.Options{Incremental: true, SegmentBytes: 2 << 10})
		require.NoError(t, err)
		events, _ := inc.Stream(streams.Events)
		if events.Messages != 50 {
			t.Fatalf("increment %d holds %d events, want the 50 added since", round, events.Messages)
		}
		if len(events.Files) < 2 {
			t.Fatalf("increment %d: %d segments, want several at 2 KiB each", round, len(events.Files))
		}
	}
	m, err := backup.Verify(dir, nil)
	require.NoError(t, err)
	require.Len(t, m.Backups, 3)

	dst := clustertest.Start(t, 1)
	dnc := clustertest.Connect(t, dst)
	djs, err := jetstream.New(dnc)
	require.NoError(t, err)
	res, err := backup.Restore(ctx, dnc, dir, backup.RestoreOptions{})
	require.NoError(t, err)
	t.Logf("restore: %+v", res)
	if res.Replayed == 0 {
		t.Fatalf("restore replayed no increment messages: %+v", res)
	}

	for _, s := range full.Streams {
		want, got := dump(t, ctx, js, s.Name), dump(t, ctx, djs, s.Name)
		if len(got) != len(want) {
			t.Fatalf("stream %s: %d messages restored, want %d", s.Name, len(got), len(want))
		}
		for i := range want {
			w, g := want[i], got[i]
			if g.Subject != w.Subject || g.Data != w.Data || !headersEqual(g.Header, w.Header) {
				t.Fatalf("stream %s message %d:\n got %+v\nwant %+v", s.Name, i, g, w)
			}
		}
	}
	for _, b := range []string{streams.BucketState} {
		want, got := kvView(t, ctx, js, b), kvView(t, ctx, djs, b)
		require.Equal(t, want, got, "KV %s restored", b)
		require.Contains(t, got, "gone.2")
		require.NotContains(t, got, "gone.0", "a key deleted in an increment stays deleted")
	}

	_, err = backup.Restore(ctx, dnc, dir, backup.RestoreOptions{})
	require.ErrorIs(t, err, backup.ErrStreamsExist, "restore over existing streams")
	_, err = backup.Restore(ctx, dnc, dir, backup.RestoreOptions{Replace: true})
	require.NoError(t, err, "restore replacing existing streams")

	// The platform runs on the restored data: a transaction reads and
	// writes restored keys, and the detector records the instances.
	runOnRestored(t, ctx, dnc, strings.Join(dst.ClientURLs(), ","))
}

func runOnRestored(t *testing.T, ctx context.Context, nc *nats.Conn, url string) {
	t.Helper()
	a, err := app.New(app.Options{NATS: url, HTTPAddr: "127.0.0.1:0", HeartbeatInterval: 100 * time.Millisecond, Logger: clustertest.Logger()})
	require.NoError(t, err)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("platform did not stop within 60s")
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("platform stopped before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("platform not ready")
	}

	var get txn.GetResponse
	request(t, nc, "txn.get", txn.GetRequest{Keys: []string{"acct.0", "acct.1"}}, &get)
	a0 := get.Values["acct.0"]
	if a0 == nil || a0.Value == nil || *a0.Value != "r2-b" {
		t.Fatalf("txn.get acct.0 on restored data = %+v, want r2-b (written last in round 2)", a0)
	}
	var commit txn.CommitResponse
	request(t, nc, "txn.commit", txn.CommitRequest{
		Reads:  map[string]uint64{"acct.0": a0.Revision, "acct.1": get.Values["acct.1"].Revision},
		Writes: map[string]string{"acct.0": "after-restore"},
	}, &commit)
	if !commit.Committed {
		t.Fatalf("txn.commit on restored data: %+v", commit)
	}

	djs := mustJS(t, nc)
	kv, err := djs.KeyValue(ctx, streams.BucketMembers)
	require.NoError(t, err)
	clustertest.Eventually(t, 30*time.Second, func() error {
		keys, err := kv.Keys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			e, err := kv.Get(ctx, k)
			if err != nil {
				continue
			}
			var m membership.Member
			if json.Unmarshal(e.Value(), &m) == nil && strings.HasPrefix(k, "platform-txn.") {
				return nil
			}
		}
		return fmt.Errorf("no txn instance in MEMBERS yet (keys %v)", keys)
	})
}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func request(t *testing.T, nc *nats.Conn, subject string, req, resp any) {
	t.Helper()
	b, err := json.Marshal(req)
	require.NoError(t, err)
	var msg *nats.Msg
	clustertest.Eventually(t, 30*time.Second, func() error {
		msg, err = nc.Request(subject, b, 5*time.Second)
		return err
	})
	require.NoError(t, json.Unmarshal(msg.Data, resp), "%s answered %s", subject, msg.Data)
}

func headersEqual(a, b nats.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestDamagedOrMissingSegmentIsNamed(t *testing.T) {
	ctx := clustertest.Context(t, 2*time.Minute)
	_, nc, js := clustertest.Provisioned(t, 1)
	dir := t.TempDir()
	writeRound(t, ctx, nc, js, 0, 20)
	_, err := backup.Backup(ctx, nc, dir, backup.Options{})
	require.NoError(t, err)
	writeRound(t, ctx, nc, js, 1, 20)
	inc, err := backup.Backup(ctx, nc, dir, backup.Options{Incremental: true})
	require.NoError(t, err)
	events, _ := inc.Stream(streams.Events)
	seg := events.Files[0].Path
	path := filepath.Join(dir, filepath.FromSlash(seg))
	good, err := os.ReadFile(path)
	require.NoError(t, err)

	dst := clustertest.Start(t, 1)
	dnc := clustertest.Connect(t, dst)
	djs := mustJS(t, dnc)
	tests := []struct {
		name   string
		break_ func()
		want   string
	}{
		{"flipped byte", func() {
			bad := slices.Clone(good)
			bad[len(bad)/2] ^= 0xff
			require.NoError(t, os.WriteFile(path, bad, 0o600))
		}, "checksum mismatch"},
		{"truncated", func() { require.NoError(t, os.WriteFile(path, good[:len(good)/2], 0o600)) }, "size"},
		{"missing", func() { require.NoError(t, os.Remove(path)) }, "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.break_()
			t.Cleanup(func() { require.NoError(t, os.WriteFile(path, good, 0o600)) })
			_, err := backup.Verify(dir, nil)
			if !errors.Is(err, backup.ErrDamaged) || !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify = %v, want ErrDamaged naming %s (%s)", err, seg, tc.want)
			}
			_, err = backup.Restore(ctx, dnc, dir, backup.RestoreOptions{})
			if !errors.Is(err, backup.ErrDamaged) || !strings.Contains(err.Error(), seg) {
				t.Fatalf("restore = %v, want ErrDamaged naming %s", err, seg)
			}
			// An increment onto the damaged chain is refused the same way,
			// and the manifest keeps the chain as it was.
			before, err := backup.LoadManifest(dir)
			require.NoError(t, err)
			_, err = backup.Backup(ctx, nc, dir, backup.Options{Incremental: true})
			if !errors.Is(err, backup.ErrDamaged) || !strings.Contains(err.Error(), seg) {
				t.Fatalf("incremental backup = %v, want ErrDamaged naming %s", err, seg)
			}
			after, err := backup.LoadManifest(dir)
			require.NoError(t, err)
			require.Len(t, after.Backups, len(before.Backups), "no entry added to a damaged chain")
			names := djs.StreamNames(ctx)
			var got []string
			for n := range names.Name() {
				got = append(got, n)
			}
			if len(got) != 0 {
				t.Fatalf("a refused restore created streams %v", got)
			}
		})
	}
}

// TestStaleCommitRefusedAfterRestore: a client reads a key, the key moves
// on twice, a backup chain captures it, and the platform is restored from
// the chain. Replayed with new sequences from the snapshot's last, the key
// would come back at the very revision the client read, and its stale
// commit would succeed; revisions only move forward, so it is refused,
// into a new cluster and replacing the streams alike.
func TestStaleCommitRefusedAfterRestore(t *testing.T) {
	ctx := clustertest.Context(t, 2*time.Minute)
	_, nc, js := clustertest.Provisioned(t, 1)
	dir := t.TempDir()
	state, err := js.KeyValue(ctx, streams.BucketState)
	require.NoError(t, err)
	for i := range 5 {
		_, err := state.Put(ctx, fmt.Sprintf("other.%d", i), []byte("v"))
		require.NoError(t, err)
	}
	_, err = backup.Backup(ctx, nc, dir, backup.Options{})
	require.NoError(t, err)
	staleRev, err := state.Put(ctx, "x", []byte("v1")) // the client reads x here
	require.NoError(t, err)
	_, err = state.Put(ctx, "x", []byte("v2"))
	require.NoError(t, err)
	last, err := state.Put(ctx, "x", []byte("v3"))
	require.NoError(t, err)
	_, err = backup.Backup(ctx, nc, dir, backup.Options{Incremental: true})
	require.NoError(t, err)
	_, err = state.Update(ctx, "x", []byte("stale"), staleRev)
	require.Error(t, err, "the stale commit is refused before the restore")

	check := func(t *testing.T, djs jetstream.JetStream) {
		t.Helper()
		kv, err := djs.KeyValue(ctx, streams.BucketState)
		require.NoError(t, err)
		e, err := kv.Get(ctx, "x")
		require.NoError(t, err)
		require.Equal(t, "v3", string(e.Value()))
		if e.Revision() <= last {
			t.Errorf("x restored at revision %d, want above %d, the last revision seen", e.Revision(), last)
		}
		for i := range 5 {
			o, err := kv.Get(ctx, fmt.Sprintf("other.%d", i))
			require.NoError(t, err, "a key of the snapshot is restored")
			require.Equal(t, "v", string(o.Value()))
		}
		_, err = kv.Update(ctx, "x", []byte("stale"), staleRev)
		require.Error(t, err, "a commit against revision %d, read before the restore, must be refused", staleRev)
		_, err = kv.Update(ctx, "x", []byte("fresh"), e.Revision())
		require.NoError(t, err, "a commit against the restored revision")
	}
	t.Run("new cluster", func(t *testing.T) {
		dnc := clustertest.Connect(t, clustertest.Start(t, 1))
		_, err := backup.Restore(ctx, dnc, dir, backup.RestoreOptions{})
		require.NoError(t, err)
		check(t, mustJS(t, dnc))
	})
	t.Run("replacing the streams", func(t *testing.T) {
		_, err := backup.Restore(ctx, nc, dir, backup.RestoreOptions{Replace: true})
		require.NoError(t, err)
		check(t, js)
	})
}
