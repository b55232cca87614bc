// Package replicator is the platform's data path: a Publisher that batches,
// compresses and pipelines events into the EVENTS stream at a chosen
// consistency level, a Reader that gives them back (undoing envelopes and
// compression) with their exact positions, and the ingest service that
// takes events from anyone on ingest.<topic> and group-commits them.
package replicator

import (
	"errors"
	"fmt"
	"strings"
)

// Level is how durable an event must be before its publish counts as done.
type Level int

// Consistency levels.
const (
	// LevelDefault, the zero value, stands for the Publisher's default level.
	LevelDefault Level = iota
	// Async returns once the event is buffered; the outcome arrives later
	// through the Future, the result handler and the metrics.
	Async
	// Quorum waits for the JetStream PubAck: the event is stored by a
	// majority of the stream's replicas.
	Quorum
	// All waits for the PubAck and then until every replica of the stream
	// has persisted the event.
	All
)

// String returns the level's name as used in the Platform-Consistency header.
func (l Level) String() string {
	switch l {
	case LevelDefault:
		return "default"
	case Async:
		return "async"
	case Quorum:
		return "quorum"
	case All:
		return "all"
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// ParseLevel parses "async", "quorum" or "all", case-insensitively.
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "async":
		return Async, nil
	case "quorum":
		return Quorum, nil
	case "all":
		return All, nil
	}
	return LevelDefault, fmt.Errorf("%w: %q (use async, quorum or all)", ErrUnknownLevel, s)
}

// ReadLevel says which replica serves a single read.
type ReadLevel int

// Read levels.
const (
	// Strong reads through the stream leader ($JS.API.STREAM.MSG.GET): it
	// sees every acknowledged event.
	Strong ReadLevel = iota
	// Eventual reads from any replica by direct get: cheaper, and may miss
	// the latest events while a replica catches up.
	Eventual
)

// Errors callers branch on with errors.Is.
var (
	// ErrClosed is returned by a Publisher or Reader after Close.
	ErrClosed = errors.New("replicator: closed")
	// ErrBufferFull is returned by a non-blocking publish when the
	// Publisher's buffer is full (back-pressure).
	ErrBufferFull = errors.New("replicator: publish buffer full")
	// ErrTooLarge is returned for an event that cannot fit in one message.
	ErrTooLarge = errors.New("replicator: event too large")
	// ErrInvalidSubject is returned for an empty subject, an empty token or
	// a wildcard.
	ErrInvalidSubject = errors.New("replicator: invalid subject")
	// ErrReservedHeader is returned for an event that sets a header the
	// replicator owns (Content-Encoding, Platform-Envelope*).
	ErrReservedHeader = errors.New("replicator: reserved header")
	// ErrUnknownLevel is returned by ParseLevel.
	ErrUnknownLevel = errors.New("replicator: unknown consistency level")
	// ErrUnknownEncoding is returned for a Content-Encoding the replicator
	// does not know.
	ErrUnknownEncoding = errors.New("replicator: unknown content encoding")
	// ErrDeadline is returned when an event could not be stored before the
	// retry deadline passed; the last error is wrapped too.
	ErrDeadline = errors.New("replicator: retry deadline passed")
	// ErrReplicasBehind is returned at level All when the event was stored
	// by a quorum (the Ack is valid) but not every replica caught up
	// before the deadline.
	ErrReplicasBehind = errors.New("replicator: not every replica caught up")
	// ErrNotFound is returned by a single read of a missing position.
	ErrNotFound = errors.New("replicator: event not found")
	// ErrMalformed is returned for a stream message that cannot be decoded.
	ErrMalformed = errors.New("replicator: malformed message")
)

// validSubject reports whether s can be published to: non-empty tokens,
// no wildcards, no whitespace.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	tokStart := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			tok := s[tokStart:i]
			if tok == "" || tok == "*" || tok == ">" {
				return false
			}
			tokStart = i + 1
			continue
		}
		switch s[i] {
		case ' ', '\t', '\r', '\n':
			return false
		}
	}
	return true
}
