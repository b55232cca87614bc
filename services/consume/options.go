package consume

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// Defaults of Options.
const (
	// DefaultPartitions is a group's partition count.
	DefaultPartitions = 16
	// DefaultTTL is how long a member stays in its group without renewing
	// its membership: a member that dies loses its partitions after it.
	DefaultTTL = 5 * time.Second
	// DefaultTick is how often a member renews, checks the assignment and
	// (as leader) recomputes it.
	DefaultTick = 500 * time.Millisecond
	// DefaultMaxBatch bounds the events of one partition committed in one
	// transaction.
	DefaultMaxBatch = 100
	// DefaultMaxPending bounds the events an at-least-once member holds
	// read and not settled.
	DefaultMaxPending = 20000
	// DefaultHeartbeat is how often a member heartbeats to the detector.
	DefaultHeartbeat = 250 * time.Millisecond
	// DefaultParallel is how many partitions of a member apply their
	// events at once: a transaction waits on round trips, not the CPU.
	DefaultParallel = 8
)

// Handler applies one event through tx. It is called for the events of
// one partition one at a time in stream order, and for several
// partitions at once (Options.Parallel). Its reads and writes commit
// together with the partition's new position, so the event's effect is
// applied exactly once. It may be called again for the same event (the
// transaction conflicted, or the commit's outcome was unknown), so it
// must have no effect besides tx. It must not write keys under
// KeyPrefix. An error other than a txn conflict is retried with backoff
// and holds up the member (per-event nak, term and dead letters are not
// built yet).
type Handler func(tx *txn.Tx, ev replicator.Event) error

// Options configure a Member.
type Options struct {
	// Conn is the NATS connection. Required.
	Conn *nats.Conn
	// Store is the transaction store (bucket STATE): it holds the handler's
	// state and the group's keys (KeyPrefix). Required.
	Store *txn.Store
	// Group names the group: letters, digits, - and _. Required.
	Group string
	// Filter is the subjects of EVENTS the group reads (default events.>).
	// The first member to start fixes it in the group's config key; a
	// member started with another filter is refused with ErrConfig: it
	// would move a partition's position past events it never saw.
	Filter []string
	// Partitions is the group's partition count (default
	// DefaultPartitions), fixed like Filter.
	Partitions int
	// Member names this member within the group: letters, digits, - and
	// _, unique among live members (default: random).
	Member string
	// Handler applies each event. Required, unless AtLeastOnce.
	Handler Handler
	// AtLeastOnce makes a member without a Handler: it hands out its
	// partitions' events through Next, and the caller settles each by its
	// token (Ack, Nak, InProgress, Term). The partition's position moves
	// past an event once it and every event before it are settled.
	AtLeastOnce bool
	// MaxDeliver is how many times an event is handed out before it goes
	// to DEAD (AtLeastOnce; default: the group's, else
	// DefaultMaxDeliver). A group created with another value refuses the
	// member with ErrConfig.
	MaxDeliver int
	// AckWait is how long a handed-out event may stay unsettled before it
	// is handed out again (AtLeastOnce; default: the group's, else
	// DefaultAckWait), fixed like MaxDeliver.
	AckWait time.Duration
	// MaxPending bounds the events read and not yet settled
	// (AtLeastOnce; default DefaultMaxPending): beyond it the member
	// stops reading until some are settled.
	MaxPending int
	// TTL is how long the membership lasts unrenewed (default DefaultTTL,
	// at least 1s: the server's smallest message TTL).
	TTL time.Duration
	// Heartbeat is how often the member publishes a heartbeat to the
	// platform's detector on hb.consume-<group>.<member>_<run> (default
	// DefaultHeartbeat; negative: none). The group's leader drops a
	// member whose run the detector declares dead or left in KV MEMBERS
	// at once; TTL stays the backstop, and decides alone where no
	// detector runs.
	Heartbeat time.Duration
	// Tick is how often the member renews and rebalances (default
	// DefaultTick; at most TTL/3).
	Tick time.Duration
	// MaxBatch bounds the events per transaction (default DefaultMaxBatch).
	MaxBatch int
	// Parallel bounds how many partitions apply their events at once
	// (default DefaultParallel); each partition's events stay in order.
	Parallel int
	// Logger receives the member's logs (default slog.Default()).
	Logger *slog.Logger
}

// ErrConfig means the group exists with another partition count or
// filter.
var ErrConfig = errors.New("consume: options differ from the group's")

func (o *Options) defaults() {
	if len(o.Filter) == 0 {
		o.Filter = []string{streams.EventsPrefix + ">"}
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if o.Member == "" {
		o.Member = crand.Text()
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Tick == 0 {
		o.Tick = min(DefaultTick, o.TTL/3)
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Parallel == 0 {
		o.Parallel = DefaultParallel
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.Conn == nil {
		errs = append(errs, errors.New("nil Conn"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("nil Store"))
	}
	switch {
	case o.Handler == nil && !o.AtLeastOnce:
		errs = append(errs, errors.New("nil Handler"))
	case o.Handler != nil && o.AtLeastOnce:
		errs = append(errs, errors.New("a Handler with AtLeastOnce: pick one"))
	}
	if o.MaxDeliver < 0 || o.MaxDeliver > 1000 {
		errs = append(errs, fmt.Errorf("max deliver %d: want 1 to 1000", o.MaxDeliver))
	}
	if o.AckWait != 0 && (o.AckWait < 100*time.Millisecond || o.AckWait > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("ack wait %s: want 100ms to 24h", o.AckWait))
	}
	if o.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("max pending %d: want positive", o.MaxPending))
	}
	if !validName(o.Group) {
		errs = append(errs, fmt.Errorf("group %q: want letters, digits, - and _", o.Group))
	}
	if !validName(o.Member) {
		errs = append(errs, fmt.Errorf("member %q: want letters, digits, - and _", o.Member))
	}
	if o.Partitions < 1 || o.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("partitions %d: want 1 to 4096", o.Partitions))
	}
	if o.TTL < time.Second {
		errs = append(errs, fmt.Errorf("ttl %s: want at least 1s", o.TTL))
	}
	if o.Tick <= 0 || o.Tick > o.TTL/3 {
		errs = append(errs, fmt.Errorf("tick %s: want positive and at most ttl/3 (%s)", o.Tick, o.TTL/3))
	}
	if o.Heartbeat > 0 && (o.Heartbeat < 10*time.Millisecond || o.Heartbeat > time.Hour) {
		errs = append(errs, fmt.Errorf("heartbeat %s: want 10ms to 1h, or negative for none", o.Heartbeat))
	}
	if o.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("max batch %d: want positive", o.MaxBatch))
	}
	if o.Parallel < 1 {
		errs = append(errs, fmt.Errorf("parallel %d: want positive", o.Parallel))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
