// Package health judges whether the platform's data path works, from the
// JetStream API alone so it holds for the embedded cluster and for an
// external one (--nats): every platform stream has a leader and a quorum
// of current replicas, and the account's storage has room. The embedded
// cluster adds nats-server's own checks (cluster.Health).
package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamTimeout bounds each stream look-up: a stream without a leader
// may answer nothing.
const StreamTimeout = 1500 * time.Millisecond

// Stream returns why a stream cannot take writes, or nil: no leader, or
// fewer current replicas (the leader included) than a quorum.
func Stream(info *jetstream.StreamInfo) error {
	name := info.Config.Name
	replicas := max(1, info.Config.Replicas)
	if info.Cluster == nil {
		return nil // a single server: the stream is where the server is
	}
	if info.Cluster.Leader == "" {
		return fmt.Errorf("stream %s has no leader", name)
	}
	if replicas == 1 {
		return nil
	}
	current := 1 // the leader
	for _, p := range info.Cluster.Replicas {
		if p.Current && !p.Offline {
			current++
		}
	}
	if quorum := replicas/2 + 1; current < quorum {
		return fmt.Errorf("stream %s below quorum: %d of %d replicas current, %d needed", name, current, replicas, quorum)
	}
	return nil
}

// Streams looks the named streams up at once and returns one error per
// stream that is missing, unreachable or fails Stream.
func Streams(ctx context.Context, js jetstream.JetStream, names []string) []error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, StreamTimeout)
			defer cancel()
			s, err := js.Stream(sctx, name)
			switch {
			case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse):
				errs[i] = fmt.Errorf("stream %s does not answer (no leader?): %w", name, err)
			case err != nil:
				errs[i] = fmt.Errorf("stream %s: %w", name, err)
			default:
				errs[i] = Stream(s.CachedInfo())
			}
		})
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Storage returns an error when the account has reached its JetStream
// file storage limit. Only an account limit is visible here; a server's
// max_file_store shows as refused writes and, for the embedded cluster,
// in cluster.Health.
func Storage(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, StreamTimeout)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("account info: %w", err)
	}
	if limit := info.Limits.MaxStore; limit > 0 && int64(info.Store) >= limit {
		return fmt.Errorf("JetStream account storage full: %d of %d bytes used", info.Store, limit)
	}
	return nil
}
