// Package streams declares every JetStream stream and KV bucket the platform
// owns, as data, provisions them idempotently with Ensure, and owns every
// subject scheme (subjects.go).
package streams

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
)

// Names of the platform's streams and KV buckets.
const (
	Events   = "EVENTS"
	Detector = "DETECTOR"
	Alerts   = "ALERTS"
	Dead     = "DEAD"

	BucketState    = "STATE"
	BucketMembers  = "MEMBERS"
	BucketWeights  = "WEIGHTS"
	BucketSilences = "SILENCES"
	BucketLeases   = "LEASES"
	BucketNFLog    = "NFLOG"
)

// ConsumeKeyPrefix is the prefix of the STATE keys where consumer groups
// keep their configuration, assignment, members and positions. Only the
// groups' own members write there: the txn service refuses a commit that
// writes or deletes under it, so no client can move a group's position or
// forge its assignment through txn.commit.
const ConsumeKeyPrefix = "_consume."

// KVStream returns the name of the stream that backs a KV bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// All returns the configuration of every stream the platform owns, KV
// buckets included, with the given replica count.
func All(replicas int) []jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	events := stream(Events, "Platform events ingested by the replicator (events.<topic>)", all(EventsPrefix), replicas, 0)
	// No store compression: the Publisher compresses payloads itself
	// (Content-Encoding), and the server's S2 block compression, which
	// runs on a sealed block while the next one is created, left a
	// replica that could never catch up ("s2: corrupt input") after the
	// whole cluster was killed with SIGKILL.
	events.MaxMsgSize = 8 << 20
	detector := stream(Detector, "Failure detector state transitions (detector.<state>.<service>.<instance>)", all(DetectorPrefix), replicas, 7*24*time.Hour)
	// Only notifications: the alerting service's requests (alerts.post,
	// alerts.list, ...) share the prefix and must not be stored.
	alerts := stream(Alerts, "Alert notifications (alerts.<severity>.<alertname>)", "", replicas, 30*24*time.Hour)
	alerts.Subjects = AlertStreamSubjects()
	// Dead letters are kept for a month, bounded in count so a group
	// that fails every event cannot fill the disks: the oldest go first.
	// The bound is a message count, not bytes: JetStream reserves a
	// stream's byte limit from the servers' storage at creation, which
	// a small max_store could not grant.
	dead := stream(Dead, "Events consumer groups gave up on (dead.<group>.<topic>)", all(DeadPrefix), replicas, 30*24*time.Hour)
	dead.MaxMsgs = 1_000_000
	dead.MaxMsgSize = 8 << 20
	state := kv(BucketState, "Transactional key/value state (txn service)", replicas, 1)
	state.AllowMsgTTL = true
	state.AllowAtomicPublish = true
	// A group's entry older than any repeat interval is of no use: it
	// would only delay a repeat that is due anyway.
	nflog := kv(BucketNFLog, "Alert notification log: the last notification per receiver and group", replicas, 1)
	nflog.MaxAge = 5 * 24 * time.Hour
	return []jetstream.StreamConfig{
		events,
		detector,
		alerts,
		dead,
		state,
		kv(BucketMembers, "Failure detector membership view (<service>.<instance>)", replicas, 1),
		kv(BucketWeights, "Balancer weight table", replicas, 1),
		kv(BucketSilences, "Alert silences", replicas, 1),
		kv(BucketLeases, "Leases that pick one active instance of a service (key: service name)", replicas, 1),
		nflog,
	}
}

// stream builds a file-backed limits stream on subject keeping messages
// for maxAge (0: forever), with direct get and a 2-minute duplicate window.
// Unlimited limits are declared as -1, as the server stores them, so
// Ensure's comparison stays exact.
func stream(name, desc, subject string, replicas int, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       desc,
		Subjects:          []string{subject},
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            maxAge,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		MaxConsumers:      -1,
		MaxMsgSize:        -1,
	}
}

// kv builds the stream of a KV bucket exactly as nats.go and the NATS CLI
// create it, so the stock tools recognise and use it.
func kv(bucket, desc string, replicas, history int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              KVStream(bucket),
		Description:       desc,
		Subjects:          []string{all(KVSubjectPrefix(bucket))},
		MaxMsgsPerSubject: int64(history),
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
	}
}

// Action says what Ensure did to one stream.
type Action string

// Actions reported by Ensure.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// Result is Ensure's report for one stream.
type Result struct {
	Stream string
	Action Action
}

// ErrImmutable is returned (wrapped) when a stream exists with a setting
// that JetStream cannot change in place.
var ErrImmutable = errors.New("setting cannot be changed in place")

// Ensure creates every stream in specs that is missing and updates those
// whose settings drifted. A stream whose storage type or retention differs
// is refused with ErrImmutable and left untouched. Ensure is idempotent;
// it makes one attempt (see Provision).
func Ensure(ctx context.Context, js jetstream.JetStream, specs []jetstream.StreamConfig) ([]Result, error) {
	var results []Result
	for _, want := range specs {
		r, err := ensureOne(ctx, js, want)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

// Provision is Ensure in short attempts until one succeeds, ctx ends or a
// stream is refused with ErrImmutable. Right after a start or a restart the
// meta leader, or a stream's RAFT group, may not answer yet, and a request
// sent then is never answered; and the meta leader refuses placement ("no
// suitable peers") until it has a node's first statistics, or for a while
// when a busy node's heartbeats run late. A later attempt finds it ready.
// retry, when not nil, hears of each failed attempt and the wait before the
// next.
func Provision(ctx context.Context, js jetstream.JetStream, specs []jetstream.StreamConfig, retry func(err error, wait time.Duration)) ([]Result, error) {
	var results []Result
	err := jsapi.Retry{
		Backoff:        jsapi.Backoff{Base: 50 * time.Millisecond, Max: 2 * time.Second},
		AttemptTimeout: 2 * time.Second,
		Retryable:      func(err error) bool { return !errors.Is(err, ErrImmutable) },
		OnRetry:        retry,
	}.Do(ctx, func(actx context.Context) error {
		var err error
		results, err = Ensure(actx, js, specs)
		return err
	})
	if errors.Is(err, jsapi.ErrGaveUp) {
		return results, fmt.Errorf("provision streams: %w", err)
	}
	return results, err
}

func ensureOne(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (Result, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, want); err != nil {
			return Result{}, fmt.Errorf("create stream %q: %w", want.Name, err)
		}
		return Result{Stream: want.Name, Action: Created}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("look up stream %q: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if have.Storage != want.Storage {
		return Result{}, fmt.Errorf("stream %q has %s storage, want %s: %w (back it up, delete it and start again)",
			want.Name, have.Storage, want.Storage, ErrImmutable)
	}
	if have.Retention != want.Retention {
		return Result{}, fmt.Errorf("stream %q has %s retention, want %s: %w (back it up, delete it and start again)",
			want.Name, have.Retention, want.Retention, ErrImmutable)
	}
	merged := merge(have, want)
	if reflect.DeepEqual(have, merged) {
		return Result{Stream: want.Name, Action: Unchanged}, nil
	}
	if _, err := js.UpdateStream(ctx, merged); err != nil {
		return Result{}, fmt.Errorf("update stream %q: %w", want.Name, err)
	}
	return Result{Stream: want.Name, Action: Updated}, nil
}

// merge returns have with every setting the platform owns taken from want;
// settings the platform does not declare (placement, metadata the server
// adds, sources) keep their current values.
func merge(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	m := have
	m.Description = want.Description
	m.Subjects = want.Subjects
	m.Replicas = want.Replicas
	m.Compression = want.Compression
	m.Discard = want.Discard
	m.Duplicates = want.Duplicates
	m.AllowDirect = want.AllowDirect
	m.AllowRollup = want.AllowRollup
	m.DenyDelete = want.DenyDelete
	m.MaxMsgsPerSubject = want.MaxMsgsPerSubject
	m.MaxMsgSize = want.MaxMsgSize
	m.MaxAge = want.MaxAge
	m.MaxMsgs = want.MaxMsgs
	m.MaxBytes = want.MaxBytes
	// Message TTLs and atomic publish can be switched on but not off.
	m.AllowMsgTTL = have.AllowMsgTTL || want.AllowMsgTTL
	m.AllowAtomicPublish = want.AllowAtomicPublish
	return m
}
