package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// Options configure the txn service.
type Options struct {
	// Conn is the NATS connection the service serves and commits on.
	// Required.
	Conn *nats.Conn
	// Bucket is the KV bucket transactions run on (default STATE).
	Bucket string
	// Concurrency bounds the commits the scheduler has in the store at
	// once (default DefaultConcurrency).
	Concurrency int
	// MaxKeys bounds the keys of one transaction or txn.get (default
	// DefaultMaxKeys, the server's atomic batch limit).
	MaxKeys int
	// MaxValueBytes bounds one value (default DefaultMaxValueBytes).
	MaxValueBytes int
	// HeartbeatInterval is the instance's heartbeat interval (default 1s).
	HeartbeatInterval time.Duration
	// Logger is the service's logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the service's metrics (nil: not exported).
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	switch {
	case o.Conn == nil:
		return errors.New("txn: nil NATS connection")
	case o.Concurrency < 0 || o.MaxKeys < 0 || o.MaxValueBytes < 0:
		return errors.New("txn: concurrency and size limits must not be negative")
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Bucket == "" {
		o.Bucket = streams.BucketState
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.MaxValueBytes == 0 {
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// GetRequest is the body of txn.get.
type GetRequest struct {
	// Keys to read.
	Keys []string `json:"keys"`
}

// GetResponse answers txn.get: one entry per key, null for a key that
// never existed.
type GetResponse struct {
	Values map[string]*Value `json:"values"`
}

// Value is one key in a txn.get answer.
type Value struct {
	// Value is the value as a string; null when the key is deleted.
	Value *string `json:"value"`
	// Revision is what to pass in a commit's reads.
	Revision uint64 `json:"revision"`
	// Deleted is set for a key whose last operation was a delete or purge.
	Deleted bool `json:"deleted,omitempty"`
}

// CommitRequest is the body of txn.commit.
type CommitRequest struct {
	// Reads maps each key read to the revision read (0: absent).
	Reads map[string]uint64 `json:"reads"`
	// Writes maps keys to new values (strings; null is refused: list a
	// key to delete in Deletes).
	Writes map[string]string `json:"writes"`
	// Deletes lists keys to delete.
	Deletes []string `json:"deletes"`
}

// commitBody is CommitRequest as the service decodes it: a null write is
// told apart from an empty string and refused. Taking it as a delete
// would give deletes a second spelling, and a client that sends null by
// mistake (an unset variable) would destroy data instead of hearing why.
type commitBody struct {
	Reads   map[string]uint64  `json:"reads"`
	Writes  map[string]*string `json:"writes"`
	Deletes []string           `json:"deletes"`
}

// CommitResponse answers a successful txn.commit.
type CommitResponse struct {
	Committed bool              `json:"committed"`
	Revisions map[string]uint64 `json:"revisions"`
}

// Service is the platform-txn micro service.
type Service struct {
	svc     *service.Service
	store   *Store
	sched   *Scheduler
	opts    Options
	metrics *metrics
}

// New returns the txn service.
func New(opts Options) (*Service, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	store, err := NewStore(opts.Conn, WithBucket(opts.Bucket), WithLogger(opts.Logger),
		WithMaxKeys(opts.MaxKeys), WithMaxValueBytes(opts.MaxValueBytes))
	if err != nil {
		return nil, err
	}
	m := newMetrics(opts.Registerer)
	s := &Service{
		store:   store,
		sched:   NewScheduler(store, WithConcurrency(opts.Concurrency)),
		opts:    opts,
		metrics: m,
	}
	s.svc, err = service.New(service.Options{
		Conn:        opts.Conn,
		Name:        "txn",
		Description: "Serializable multi-key transactions on KV bucket " + opts.Bucket + ", committed as JetStream atomic batches",
		Endpoints: []service.Endpoint{
			{
				Name:        "get",
				Subject:     streams.TxnGetSubject,
				Description: `Read keys through the stream leader: {"keys":["k1","k2"]} -> {"values":{"k1":{"value":"v","revision":7},"k2":null}}`,
				Handler:     service.Func(s.handleGet),
				Concurrency: 16,
			},
			{
				Name:        "commit",
				Subject:     streams.TxnCommitSubject,
				Description: `Commit atomically: {"reads":{"k1":7,"k2":0},"writes":{"k1":"v"},"deletes":[]} -> {"committed":true,"revisions":{"k1":9}} or a conflict error naming the key`,
				Handler:     s.handleCommit,
			},
		},
		Metadata:          map[string]string{"bucket": opts.Bucket, "reserved_prefix": ReservedPrefix},
		HeartbeatInterval: opts.HeartbeatInterval,
		Logger:            opts.Logger,
		Registerer:        opts.Registerer,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Store returns the service's store.
func (s *Service) Store() *Store { return s.store }

// Ready is closed once the service serves.
func (s *Service) Ready() <-chan struct{} { return s.svc.Ready() }

// Run serves until ctx is done: the micro service stops taking requests,
// then the scheduler finishes the commits it started.
func (s *Service) Run(ctx context.Context) error {
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.sched.Run(sctx)
	}()
	err := s.svc.Run(ctx)
	stop()
	wg.Wait()
	return err
}

func (s *Service) handleGet(ctx context.Context, r *service.Request) (any, error) {
	var req GetRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	if len(req.Keys) == 0 {
		return nil, service.Errorf(service.CodeBadRequest, `no keys: send {"keys":["k1",...]}`)
	}
	if len(req.Keys) > s.store.MaxKeys() {
		return nil, service.Errorf(service.CodeTooLarge, "%d keys, at most %d per request", len(req.Keys), s.store.MaxKeys())
	}
	entries, err := s.store.GetMany(ctx, req.Keys)
	if err != nil {
		return nil, serviceError(err)
	}
	resp := GetResponse{Values: make(map[string]*Value, len(entries))}
	for k, e := range entries {
		switch {
		case e.Found:
			v := string(e.Value)
			resp.Values[k] = &Value{Value: &v, Revision: e.Revision}
		case e.Revision > 0:
			resp.Values[k] = &Value{Revision: e.Revision, Deleted: true}
		default:
			resp.Values[k] = nil
		}
	}
	return resp, nil
}

func (s *Service) handleCommit(ctx context.Context, r *service.Request) {
	start := time.Now()
	var req commitBody
	if err := r.Decode(&req); err != nil {
		s.metrics.result("invalid")
		r.Fail(err)
		return
	}
	c, err := commitOf(req)
	if err != nil {
		s.metrics.result("invalid")
		r.Fail(err)
		return
	}
	err = s.sched.Submit(ctx, c, func(revs map[string]uint64, err error) {
		s.metrics.latency.Observe(time.Since(start).Seconds())
		if err != nil {
			if errors.Is(err, ErrConflict) {
				s.metrics.result("conflict")
			} else {
				s.metrics.result("error")
			}
			r.Fail(serviceError(err))
			return
		}
		s.metrics.result("committed")
		r.Respond(CommitResponse{Committed: true, Revisions: revs})
	})
	if err != nil {
		s.metrics.result("invalid")
		r.Fail(serviceError(err))
	}
}

// commitOf checks a decoded txn.commit body and returns its commit:
// no null write, no write or delete under the consumer groups' prefix,
// not empty. Failures are bad_request *service.Errors; the keys
// themselves are checked when the commit is planned.
func commitOf(req commitBody) (Commit, error) {
	c := Commit{Reads: req.Reads, Deletes: req.Deletes}
	if len(req.Writes) > 0 {
		c.Writes = make(map[string][]byte, len(req.Writes))
		var null []string // keys written as null
		for k, v := range req.Writes {
			if v == nil {
				null = append(null, k)
				continue
			}
			c.Writes[k] = []byte(*v)
		}
		if len(null) > 0 {
			k := slices.Min(null)
			return Commit{}, service.Errorf(service.CodeBadRequest,
				`write of %q is null: a write takes a string value; to delete a key, list it in "deletes"`, k).With("key", k)
		}
	}
	if k, ok := protectedKey(c); ok {
		return Commit{}, service.Errorf(service.CodeBadRequest,
			"%q is under %q, where consumer groups keep their positions: only their members write there", k, streams.ConsumeKeyPrefix).With("key", k)
	}
	if c.Empty() {
		return Commit{}, service.Errorf(service.CodeBadRequest, `empty transaction: send {"reads":{...},"writes":{...},"deletes":[...]}`)
	}
	return c, nil
}

// protectedKey returns the first key (in order) that c writes or deletes
// under streams.ConsumeKeyPrefix. Reading one is allowed: a client may
// check a group's position.
func protectedKey(c Commit) (string, bool) {
	var keys []string
	for k := range c.Writes {
		keys = append(keys, k)
	}
	keys = append(keys, c.Deletes...)
	keys = slices.DeleteFunc(keys, func(k string) bool { return !strings.HasPrefix(k, streams.ConsumeKeyPrefix) })
	if len(keys) == 0 {
		return "", false
	}
	return slices.Min(keys), true
}

// serviceError turns a txn error into the service's error body.
func serviceError(err error) *service.Error {
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		e := service.Errorf(service.CodeConflict, "%s", ce.Error())
		e = e.With("key", ce.Key).With("expected", ce.Expected).With("actual", ce.Actual)
		if ce.Busy {
			e = e.With("busy", true)
		}
		return e
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrReservedKey), errors.Is(err, ErrInvalidCommit):
		return service.Errorf(service.CodeBadRequest, "%v", err)
	case errors.Is(err, ErrTooManyKeys), errors.Is(err, ErrValueTooLarge):
		return service.Errorf(service.CodeTooLarge, "%v", err)
	case errors.Is(err, ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded):
		return service.Errorf(service.CodeTimeout, "%v", err)
	case jsapi.IsStorageFull(err):
		return service.Errorf(service.CodeUnavailable, "%v", err).With("reason", "storage_full")
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrStopped):
		return service.Errorf(service.CodeUnavailable, "%v", err)
	}
	return service.Errorf(service.CodeInternal, "%v", fmt.Errorf("txn: %w", err))
}
