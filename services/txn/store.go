package txn

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

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

// Headers the store writes and reads.
const (
	hdrExpectedLastSubjSeq     = "Nats-Expected-Last-Subject-Sequence"
	hdrExpectedLastSubjSeqSubj = "Nats-Expected-Last-Subject-Sequence-Subject"
	hdrMsgID                   = "Nats-Msg-Id"
	hdrTTL                     = "Nats-TTL"
	hdrBatchID                 = "Nats-Batch-Id"
	hdrBatchSeq                = "Nats-Batch-Sequence"
	hdrBatchCommit             = "Nats-Batch-Commit"
	hdrKVOperation             = "KV-Operation"
	// HeaderTxnID names the transaction that wrote a value. Every value a
	// commit writes carries it, so a commit whose acknowledgement was lost
	// can find out whether it was applied.
	HeaderTxnID = "Platform-Txn-Id"

	kvOpDelete = "DEL"
	kvOpPurge  = "PURGE"
	markerTTL  = "1s"
)

// JetStream API error codes the store branches on.
const (
	errCodeNoMessage          = 10037
	errCodeWrongLastSeq       = 10071
	errCodeWrongLastSeqBusy   = 10164
	errCodeBatchDuplicate     = 10201
	errCodeBatchIncomplete    = 10176
	errCodeBatchTooMany       = 10210
	errCodeDuplicateInProcess = 10158
	errCodeClusterNotLeader   = 10009
	errCodeClusterNotAvail    = 10008
)

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
	subjPrefix     string
	getSubject     string
	log            *slog.Logger
	maxKeys        int
	maxValueBytes  int
	requestTimeout time.Duration
	opTimeout      time.Duration
	group          groupCommitter
}

// Option configures a Store.
type Option func(*Store)

// WithBucket uses the KV bucket name instead of STATE. The bucket's stream
// must allow atomic publish and message TTLs.
func WithBucket(name string) Option { return func(s *Store) { s.bucket = name } }

// WithLogger sets the store's logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithMaxKeys bounds the keys of one transaction (default DefaultMaxKeys;
// must not exceed the server's max_batch_size).
func WithMaxKeys(n int) Option { return func(s *Store) { s.maxKeys = n } }

// WithMaxValueBytes bounds one value (default DefaultMaxValueBytes).
func WithMaxValueBytes(n int) Option { return func(s *Store) { s.maxValueBytes = n } }

// WithRequestTimeout bounds one request to the stream (default
// DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) Option { return func(s *Store) { s.requestTimeout = d } }

// WithOpTimeout bounds how long one read or commit retries while the
// stream is unavailable (default DefaultOpTimeout).
func WithOpTimeout(d time.Duration) Option { return func(s *Store) { s.opTimeout = d } }

// NewStore returns a store on the connection.
func NewStore(nc *nats.Conn, opts ...Option) (*Store, error) {
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
	s.subjPrefix = "$KV." + s.bucket + "."
	s.getSubject = "$JS.API.STREAM.MSG.GET." + s.stream
	s.log = s.log.With("component", "txn")
	return s, nil
}

// Bucket returns the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

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
	switch m.hdr.Get(hdrKVOperation) {
	case kvOpDelete, kvOpPurge:
		return e
	}
	e.Found = true
	e.Value = m.data
	if e.Value == nil {
		e.Value = []byte{}
	}
	return e
}

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (status %d, error %d)", e.Description, e.Code, e.ErrCode)
}

// transient reports whether the error means the request was not handled
// and may be retried: no leader, leader moving, batch lost in a leader
// change, too many batches in flight.
func (e *apiError) transient() bool {
	switch e.ErrCode {
	case errCodeBatchIncomplete, errCodeBatchTooMany, errCodeClusterNotLeader, errCodeClusterNotAvail, errCodeDuplicateInProcess:
		return true
	}
	return e.Code == 503
}

// load fetches the last message of key's subject from the stream leader,
// retrying while the stream is unavailable.
func (s *Store) load(ctx context.Context, key string) (storedMsg, error) {
	body, _ := json.Marshal(struct {
		LastBySubj string `json:"last_by_subj"`
	}{s.subjPrefix + key})
	var resp struct {
		Message *struct {
			Seq    uint64 `json:"seq"`
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *apiError `json:"error"`
	}
	var out storedMsg
	err := s.retry(ctx, func(actx context.Context) (bool, error) {
		msg, err := s.nc.RequestWithContext(actx, s.getSubject, body)
		if err != nil {
			return retryableNATS(ctx, err), err
		}
		resp.Message, resp.Error = nil, nil
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return false, fmt.Errorf("decode stream message: %w", err)
		}
		if resp.Error != nil {
			if resp.Error.ErrCode == errCodeNoMessage {
				out = storedMsg{}
				return false, nil
			}
			return resp.Error.transient(), resp.Error
		}
		if resp.Message == nil {
			return false, errors.New("empty stream message response")
		}
		out = storedMsg{found: true, seq: resp.Message.Seq, data: resp.Message.Data}
		if len(resp.Message.Header) > 0 {
			h, err := nats.DecodeHeadersMsg(resp.Message.Header)
			if err != nil {
				return false, fmt.Errorf("decode stream message headers: %w", err)
			}
			out.hdr = h
		}
		return false, nil
	})
	return out, err
}

// retry calls attempt with a per-request timeout until it succeeds, fails
// for good (retryable false) or the operation timeout passes; then the last
// error is returned wrapped in ErrUnavailable.
func (s *Store) retry(ctx context.Context, attempt func(actx context.Context) (retryable bool, err error)) error {
	deadline := time.Now().Add(s.opTimeout)
	backoff := 10 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, s.requestTimeout)
		retryable, err := attempt(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !retryable {
			return err
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if err := sleep(ctx, jitter(backoff)); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// retryableNATS reports whether a request error is worth retrying: the
// request timed out or found no responder (no stream leader), and the
// caller's context is still live.
func retryableNATS(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jitter returns a random duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// newID returns a random transaction id (26 base32 characters).
func newID() string { return crand.Text() }
