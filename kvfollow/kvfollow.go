// Package kvfollow keeps a process's view of a KV bucket: it delivers the
// bucket's current entries, then every change, and when its watch ends
// (a reconnect, a stream leader change, a node restart) it watches again
// from the revision after the last one delivered, so nothing is lost or
// delivered twice.
package kvfollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
)

// KV is the part of a jetstream.KeyValue a follower uses.
type KV interface {
	Bucket() string
	WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

// Options configure a follower.
type Options struct {
	// Put is called with every value written: first the current value of
	// each key, then each write. Required.
	Put func(e jetstream.KeyValueEntry)
	// Delete is called with every delete or purge marker (e.Operation()
	// tells which): first those of keys deleted before Start, then each
	// deletion. Nil: deletions are skipped.
	Delete func(e jetstream.KeyValueEntry)
	// Backoff spaces attempts to watch again after a watch ended
	// (default 100ms growing to 5s).
	Backoff jsapi.Backoff
	// Logger receives a line each time the watch ends and resumes (default
	// slog.Default()).
	Logger *slog.Logger
}

// defaultBackoff spaces resumes: quick after a blip, a few seconds while
// the bucket's stream has no leader.
var defaultBackoff = jsapi.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// Follower follows one bucket. Put and Delete are called from one
// goroutine, one entry at a time, in revision order, each revision at
// most once.
type Follower struct {
	kv     KV
	opts   Options
	log    *slog.Logger
	cancel context.CancelFunc

	last     uint64 // revision of the last entry delivered; owned by run
	synced   chan struct{}
	syncOnce sync.Once
	closed   chan struct{}
}

// Start watches kv and follows it in the background until ctx ends or
// Stop is called. It returns an error if the first watch cannot be made
// (the bucket is missing, NATS is down); later failures are retried.
func Start(ctx context.Context, kv KV, opts Options) (*Follower, error) {
	if opts.Put == nil {
		return nil, errors.New("kvfollow: nil Put")
	}
	if opts.Delete == nil {
		opts.Delete = func(jetstream.KeyValueEntry) {}
	}
	if opts.Backoff == (jsapi.Backoff{}) {
		opts.Backoff = defaultBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("kvfollow: watch %s: %w", kv.Bucket(), err)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower{
		kv: kv, opts: opts, cancel: cancel,
		log:    opts.Logger.With("bucket", kv.Bucket()),
		synced: make(chan struct{}),
		closed: make(chan struct{}),
	}
	go f.run(ctx, w)
	return f, nil
}

// Synced is closed once the entries the bucket held at Start have been
// delivered.
func (f *Follower) Synced() <-chan struct{} { return f.synced }

// Closed is closed once the follower has stopped: no call of Put or
// Delete is under way or will come.
func (f *Follower) Closed() <-chan struct{} { return f.closed }

// Stop stops following and waits until the follower has stopped. It may
// be called any number of times.
func (f *Follower) Stop() {
	f.cancel()
	<-f.closed
}

// run delivers from w, and from each watch that replaces it, until ctx
// ends.
func (f *Follower) run(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(f.closed)
	defer f.cancel()
	attempt := 0
	for {
		if f.deliver(ctx, w) {
			attempt = 0
		}
		_ = w.Stop()
		if ctx.Err() != nil {
			return
		}
		for {
			d := f.opts.Backoff.Delay(attempt)
			attempt++
			f.log.Info("watch ended, resuming", "after_revision", f.last, "in", d)
			if jsapi.Sleep(ctx, d) != nil {
				return
			}
			var err error
			if w, err = f.watch(ctx); err == nil {
				break
			}
			f.log.Warn("resume watch", "err", err)
		}
	}
}

// watch watches again from the revision after the last one delivered
// (every change since, in order), or, if none was, from the current view.
func (f *Follower) watch(ctx context.Context) (jetstream.KeyWatcher, error) {
	if f.last == 0 {
		return f.kv.WatchAll(ctx)
	}
	return f.kv.WatchAll(ctx, jetstream.ResumeFromRevision(f.last+1))
}

// deliver passes w's entries on until w ends or ctx does, and reports
// whether w delivered anything (an entry or the end of its initial
// values): whether it worked.
func (f *Follower) deliver(ctx context.Context, w jetstream.KeyWatcher) (worked bool) {
	for {
		select {
		case <-ctx.Done():
			return worked
		case e, ok := <-w.Updates():
			if !ok {
				return worked
			}
			worked = true
			if e == nil {
				f.syncOnce.Do(func() { close(f.synced) })
				continue
			}
			if e.Revision() <= f.last {
				continue // delivered before this watch began
			}
			f.last = e.Revision()
			if e.Operation() == jetstream.KeyValuePut {
				f.opts.Put(e)
			} else {
				f.opts.Delete(e)
			}
		}
	}
}
