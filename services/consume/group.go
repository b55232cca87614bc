package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

// Defaults of a group's at-least-once settings.
const (
	// DefaultMaxDeliver is how many times an event is handed out before it
	// goes to DEAD.
	DefaultMaxDeliver = 5
	// DefaultAckWait is how long a handed-out event may stay unsettled
	// before it is handed out again.
	DefaultAckWait = 30 * time.Second
)

// ErrNoGroup means the group has no config key: no member ever joined it
// and it was never created.
var ErrNoGroup = errors.New("consume: no such group")

// GroupConfig is a group's configuration, fixed when the group is
// created (by CreateGroup or its first member).
type GroupConfig struct {
	// Name is the group's name.
	Name string `json:"group"`
	// Partitions is the partition count (default DefaultPartitions).
	Partitions int `json:"partitions"`
	// Filter is the subjects of EVENTS it reads (default events.>).
	Filter []string `json:"filter"`
	// MaxDeliver is how many deliveries an event gets before it goes to
	// DEAD (default DefaultMaxDeliver).
	MaxDeliver int `json:"max_deliver"`
	// AckWait is how long a delivery may stay unsettled (default
	// DefaultAckWait).
	AckWait time.Duration `json:"ack_wait"`
}

func (g *GroupConfig) defaults() {
	if len(g.Filter) == 0 {
		g.Filter = []string{streams.EventsPrefix + ">"}
	}
	if g.Partitions == 0 {
		g.Partitions = DefaultPartitions
	}
	if g.MaxDeliver == 0 {
		g.MaxDeliver = DefaultMaxDeliver
	}
	if g.AckWait == 0 {
		g.AckWait = DefaultAckWait
	}
}

func (g GroupConfig) validate() error {
	var errs []error
	if !validName(g.Name) {
		errs = append(errs, fmt.Errorf("group %q: want letters, digits, - and _", g.Name))
	}
	if g.Partitions < 1 || g.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("partitions %d: want 1 to 4096", g.Partitions))
	}
	if g.MaxDeliver < 1 || g.MaxDeliver > 1000 {
		errs = append(errs, fmt.Errorf("max deliver %d: want 1 to 1000", g.MaxDeliver))
	}
	if g.AckWait < 100*time.Millisecond || g.AckWait > 24*time.Hour {
		errs = append(errs, fmt.Errorf("ack wait %s: want 100ms to 24h", g.AckWait))
	}
	for _, f := range g.Filter {
		if !validFilter(f) {
			errs = append(errs, fmt.Errorf("filter %q: want a subject under %s", f, streams.EventsPrefix))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	return nil
}

// validFilter accepts events.<tokens> with wildcards, no empty token.
func validFilter(f string) bool {
	if len(f) <= len(streams.EventsPrefix) || len(f) > 255 || f[:len(streams.EventsPrefix)] != streams.EventsPrefix {
		return false
	}
	tok := 0
	for i := 0; i < len(f); i++ {
		switch c := f[i]; {
		case c == '.':
			if tok == 0 {
				return false
			}
			tok = 0
		case c <= ' ' || c == 0x7f:
			return false
		default:
			tok++
		}
	}
	return tok > 0
}

func (g GroupConfig) stored() config {
	return config{Partitions: g.Partitions, Filter: g.Filter, MaxDeliver: g.MaxDeliver, AckWaitMS: g.AckWait.Milliseconds()}
}

// decodeConfig reads the value of group's config key, checked as
// CreateGroup checks what it writes: the key is in a bucket anyone
// allowed to write KV can write, and readers size their tables by its
// partition count.
func decodeConfig(group, key string, b []byte) (GroupConfig, error) {
	c, err := decode[config](key, b)
	if err != nil {
		return GroupConfig{}, err
	}
	// Checked before fromStored multiplies it into a Duration, which
	// would wrap around for a large value.
	if c.AckWaitMS < 0 || c.AckWaitMS > MaxNakDelay.Milliseconds() {
		return GroupConfig{}, fmt.Errorf("consume: decode %s: ack_wait_ms %d: want 0 to %d", key, c.AckWaitMS, MaxNakDelay.Milliseconds())
	}
	g := fromStored(group, c)
	if err := g.validate(); err != nil {
		return GroupConfig{}, fmt.Errorf("%w (in %s)", err, key)
	}
	return g, nil
}

func fromStored(name string, c config) GroupConfig {
	g := GroupConfig{Name: name, Partitions: c.Partitions, Filter: c.Filter, MaxDeliver: c.MaxDeliver, AckWait: time.Duration(c.AckWaitMS) * time.Millisecond}
	if g.MaxDeliver == 0 {
		g.MaxDeliver = DefaultMaxDeliver
	}
	if g.AckWait == 0 {
		g.AckWait = DefaultAckWait
	}
	return g
}

// CreateGroup creates group g.Name with g's settings (zero fields take
// the defaults) and returns them. If the group exists with the same
// partitions, filter, max deliver and ack wait it returns them too; if
// any differs it returns ErrConfig.
func CreateGroup(ctx context.Context, store *txn.Store, g GroupConfig) (GroupConfig, error) {
	g.defaults()
	if err := g.validate(); err != nil {
		return GroupConfig{}, err
	}
	have, err := joinGroup(ctx, store, g, true)
	if err != nil {
		return GroupConfig{}, err
	}
	switch {
	case have.MaxDeliver != g.MaxDeliver:
		return have, fmt.Errorf("%w: group %s has max deliver %d, asked %d", ErrConfig, g.Name, have.MaxDeliver, g.MaxDeliver)
	case have.AckWait != g.AckWait:
		return have, fmt.Errorf("%w: group %s has ack wait %s, asked %s", ErrConfig, g.Name, have.AckWait, g.AckWait)
	}
	return have, nil
}

// LookupGroup returns group's configuration, or ErrUnknownGroup.
func LookupGroup(ctx context.Context, store *txn.Store, group string) (GroupConfig, error) {
	if !validName(group) {
		return GroupConfig{}, fmt.Errorf("%w: %q is not a group name (letters, digits, - and _)", ErrUnknownGroup, group)
	}
	key := groupKey(group, "config")
	e, err := store.Get(ctx, key)
	if err != nil {
		return GroupConfig{}, fmt.Errorf("consume: group %s: %w", group, err)
	}
	if !e.Found {
		return GroupConfig{}, fmt.Errorf("%w: %s", ErrUnknownGroup, group)
	}
	return decodeConfig(group, key, e.Value)
}

// joinGroup creates the group's config key if it is missing (writing g),
// or checks that the stored partitions and filter equal g's, and returns
// the stored configuration.
func joinGroup(ctx context.Context, store *txn.Store, g GroupConfig, create bool) (GroupConfig, error) {
	key := groupKey(g.Name, "config")
	for {
		e, err := store.Get(ctx, key)
		if err != nil {
			return GroupConfig{}, fmt.Errorf("consume: join %s: %w", g.Name, err)
		}
		if e.Found {
			c, err := decodeConfig(g.Name, key, e.Value)
			if err != nil {
				return GroupConfig{}, err
			}
			switch {
			case c.Partitions != g.Partitions:
				return GroupConfig{}, fmt.Errorf("%w: group %s has %d partitions, asked %d", ErrConfig, g.Name, c.Partitions, g.Partitions)
			case !slices.Equal(c.Filter, g.Filter):
				return GroupConfig{}, fmt.Errorf("%w: group %s reads %q, asked %q", ErrConfig, g.Name, c.Filter, g.Filter)
			}
			return c, nil
		}
		if !create {
			return GroupConfig{}, fmt.Errorf("%w: %s", ErrUnknownGroup, g.Name)
		}
		v, _ := json.Marshal(g.stored())
		_, err = store.Commit(ctx, txn.Commit{Reads: map[string]uint64{key: e.Revision}, Writes: map[string][]byte{key: v}})
		if err != nil && !errors.Is(err, txn.ErrConflict) {
			return GroupConfig{}, fmt.Errorf("consume: join %s: %w", g.Name, err)
		}
	}
}
