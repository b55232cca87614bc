package txn

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/streams"
)

// Defaults of a Store.
const (
	// DefaultMaxKeys is the server's default atomic batch size limit: one
	// message per key, so a transaction may touch at most this many keys.
	DefaultMaxKeys = 1000
	// DefaultMaxValueBytes bounds one value; it stays well below the
	// server's default max_payload (1 MiB) so headers always fit.
	DefaultMaxValueBytes = 512 << 10
	// DefaultRequestTimeout bounds one request to the stream (a read or
	// one commit attempt).
	DefaultRequestTimeout = 2 * time.Second
	// DefaultOpTimeout bounds how long one read or commit keeps retrying
	// while the stream has no leader. It must stay below the bucket's
	// duplicate window (2m), which makes commit retries idempotent.
	DefaultOpTimeout = 30 * time.Second
)

// markerTTL is how long the delete marker of a read-only check stays in
// the bucket before the server removes it.
const markerTTL = "1s"

// Entry is one key as a transaction read it.
type Entry struct {
	// Key is the key.
	Key string
	// Value is the value; nil when the key is absent.
	Value []byte
	// Revision is the key's revision (its stream sequence) when read: 0
	// when the key never existed, the delete marker's revision when it was
	// deleted or purged.
	Revision uint64
	// Found reports whether the key holds a value.
	Found bool
}

// Store reads and commits transactions on one KV bucket (STATE by
// default). It is safe for concurrent use.
type Store struct {
	nc             *nats.Conn
	bucket         string
	stream         string
	log            *slog.Logger
	maxKeys        int
	maxValueBytes  int
	requestTimeout time.Duration
	opTimeout      time.Duration
	group          groupCommitter
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithBucket uses the KV bucket name instead of STATE. The bucket's stream
// must allow atomic publish and message TTLs.
func WithBucket(name string) StoreOption { return func(s *Store) { s.bucket = name } }

// WithLogger sets the store's logger (default slog.Default()).
func WithLogger(l *slog.Logger) StoreOption { return func(s *Store) { s.log = l } }

// WithMaxKeys bounds the keys of one transaction (default DefaultMaxKeys;
// must not exceed the server's max_batch_size).
func WithMaxKeys(n int) StoreOption { return func(s *Store) { s.maxKeys = n } }

// WithMaxValueBytes bounds one value (default DefaultMaxValueBytes).
func WithMaxValueBytes(n int) StoreOption { return func(s *Store) { s.maxValueBytes = n } }

// WithRequestTimeout bounds one request to the stream (default
// DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) StoreOption { return func(s *Store) { s.requestTimeout = d } }

// WithOpTimeout bounds how long one read or commit retries while the
// stream is unavailable (default DefaultOpTimeout).
func WithOpTimeout(d time.Duration) StoreOption { return func(s *Store) { s.opTimeout = d } }

// NewStore returns a store on the connection.
func NewStore(nc *nats.Conn, opts ...StoreOption) (*Store, error) {
	s := &Store{
		nc:             nc,
		bucket:         streams.BucketState,
		log:            slog.Default(),
		maxKeys:        DefaultMaxKeys,
		maxValueBytes:  DefaultMaxValueBytes,
		requestTimeout: DefaultRequestTimeout,
		opTimeout:      DefaultOpTimeout,
	}
	for _, o := range opts {
		o(s)
	}
	switch {
	case nc == nil:
		return nil, errors.New("txn: new store: nil NATS connection")
	case s.bucket == "" || strings.ContainsAny(s.bucket, ".*> "):
		return nil, fmt.Errorf("txn: new store: invalid bucket name %q", s.bucket)
	case s.maxKeys < 1:
		return nil, fmt.Errorf("txn: new store: max keys must be positive, got %d", s.maxKeys)
	case s.maxValueBytes < 1:
		return nil, fmt.Errorf("txn: new store: max value bytes must be positive, got %d", s.maxValueBytes)
	case s.requestTimeout <= 0 || s.opTimeout <= 0:
		return nil, errors.New("txn: new store: timeouts must be positive")
	case s.log == nil:
		s.log = slog.Default()
	}
	s.stream = streams.KVStream(s.bucket)
	s.log = s.log.With("component", "txn")
	return s, nil
}

// Bucket returns the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Conn returns the store's NATS connection.
func (s *Store) Conn() *nats.Conn { return s.nc }

// MaxKeys returns the most keys one transaction may touch.
func (s *Store) MaxKeys() int { return s.maxKeys }

// MaxValueBytes returns the largest value the store accepts.
func (s *Store) MaxValueBytes() int { return s.maxValueBytes }

// Get reads key's latest value and revision through the stream leader (a
// consistent read, not a direct get from a replica). An absent key is not
// an error: the entry has Found false. Invalid keys give ErrInvalidKey or
// ErrReservedKey; an unreachable stream gives ErrUnavailable.
func (s *Store) Get(ctx context.Context, key string) (Entry, error) {
	if err := ValidateKey(key); err != nil {
		return Entry{}, err
	}
	m, err := s.load(ctx, key)
	if err != nil {
		return Entry{}, fmt.Errorf("txn: get %q: %w", key, err)
	}
	return m.entry(key), nil
}

// GetMany reads several keys concurrently, each through the stream leader.
// The reads are not one snapshot; a transaction's commit validates them.
func (s *Store) GetMany(ctx context.Context, keys []string) (map[string]Entry, error) {
	for _, k := range keys {
		if err := ValidateKey(k); err != nil {
			return nil, err
		}
	}
	out := make(map[string]Entry, len(keys))
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		sem      = make(chan struct{}, 32)
	)
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m, err := s.load(ctx, k)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("txn: get %q: %w", k, err)
				}
				return
			}
			out[k] = m.entry(k)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// storedMsg is the last message on a key's subject.
type storedMsg struct {
	found bool
	seq   uint64
	hdr   nats.Header
	data  []byte
}

func (m storedMsg) entry(key string) Entry {
	e := Entry{Key: key, Revision: m.seq}
	if !m.found {
		return e
	}
	switch m.hdr.Get(streams.KVOperationHeader) {
	case streams.KVOperationDelete, streams.KVOperationPurge:
		return e
	}
	e.Found = true
	e.Value = m.data
	if e.Value == nil {
		e.Value = []byte{}
	}
	return e
}

// load fetches the last message of key's subject from the stream leader,
// retrying while the stream is unavailable: each request is bounded by the
// request timeout, the whole read by the operation timeout, after which
// the last error is returned wrapped in ErrUnavailable.
func (s *Store) load(ctx context.Context, key string) (storedMsg, error) {
	req := jsapi.GetRequest{LastBySubject: streams.KVSubject(s.bucket, key)}
	var out storedMsg
	err := jsapi.Retry{
		Backoff:        jsapi.Backoff{Base: 10 * time.Millisecond, Max: 250 * time.Millisecond},
		AttemptTimeout: s.requestTimeout,
		Timeout:        s.opTimeout,
	}.Do(ctx, func(ctx context.Context) error {
		m, err := jsapi.GetMsg(ctx, s.nc, s.stream, req, jsapi.Leader)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			out = storedMsg{}
			return nil
		case err != nil:
			return err
		}
		out = storedMsg{found: true, seq: m.Seq, hdr: m.Header, data: m.Data}
		return nil
	})
	if errors.Is(err, jsapi.ErrGaveUp) {
		return storedMsg{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return out, err
}

// newID returns a random transaction id (26 base32 characters).
func newID() string { return crand.Text() }
