package txnbench

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/txn"
)

// seed writes initial values through the store.
func seed(ctx context.Context, s *txn.Store, keys []string) error {
	for i := 0; i < len(keys); i += 100 {
		c := txn.Commit{Writes: map[string][]byte{}}
		for _, k := range keys[i:min(i+100, len(keys))] {
			c.Writes[k] = []byte(counterInitial)
		}
		if _, err := s.Commit(ctx, c); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// Increment is the benchmark transaction: read each key and write it back
// plus one. It returns how many conflicts Run retried.
func Increment(ctx context.Context, s *txn.Store, keys ...string) (int, error) {
	aborts := 0
	err := txn.Run(ctx, s, func(tx *txn.Tx) error {
		var got map[string]txn.Entry
		if len(keys) == 1 {
			e, err := tx.Get(keys[0])
			if err != nil {
				return err
			}
			got = map[string]txn.Entry{keys[0]: e}
		} else {
			var err error
			if got, err = tx.GetAll(keys...); err != nil {
				return err
			}
		}
		for _, k := range keys {
			n, _ := strconv.Atoi(string(got[k].Value))
			if err := tx.Put(k, []byte(strconv.Itoa(n+1))); err != nil {
				return err
			}
		}
		return nil
	}, txn.WithMaxAttempts(100), txn.WithConflictResolver(func(context.Context, *txn.ConflictError, int) error {
		aborts++
		return nil
	}))
	return aborts, err
}

// KVIncrement is the baseline: kv.Get then kv.Update at the revision read,
// retried on a revision mismatch.
func KVIncrement(ctx context.Context, kv jetstream.KeyValue, key string) (int, error) {
	for aborts := 0; ; aborts++ {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) && aborts <= 100 {
			// KV reads go direct to any replica, which may not hold the
			// seeding put yet: a stale read, retried like a conflict.
			continue
		}
		if err != nil {
			return aborts, err
		}
		n, _ := strconv.Atoi(string(e.Value()))
		_, err = kv.Update(ctx, key, []byte(strconv.Itoa(n+1)), e.Revision())
		if err == nil {
			return aborts, nil
		}
		if !jsapi.HasCode(err, jsapi.CodeWrongLastSequence) || aborts > 100 {
			return aborts, err
		}
	}
}
