package txn

import (
	"errors"
	"fmt"
)

// Errors callers branch on with errors.Is.
var (
	// ErrConflict means a key the transaction read or wrote had moved by
	// commit time; nothing was written. The error is a *ConflictError.
	ErrConflict = errors.New("txn: conflict")
	// ErrInvalidKey means a key is not a valid KV key.
	ErrInvalidKey = errors.New("txn: invalid key")
	// ErrReservedKey means a key is under ReservedPrefix.
	ErrReservedKey = errors.New("txn: reserved key")
	// ErrValueTooLarge means a value exceeds the store's value limit.
	ErrValueTooLarge = errors.New("txn: value too large")
	// ErrTooManyKeys means a transaction touches more keys than one atomic
	// batch may carry.
	ErrTooManyKeys = errors.New("txn: too many keys")
	// ErrInvalidCommit means a commit is malformed (a key both written and
	// deleted, for example).
	ErrInvalidCommit = errors.New("txn: invalid commit")
	// ErrUnknownOutcome means a commit's acknowledgement was lost (timeout,
	// connection loss) and retrying could not establish whether it was
	// applied. Run does not retry it.
	ErrUnknownOutcome = errors.New("txn: commit outcome unknown")
	// ErrUnavailable means the stream did not answer in time (no leader,
	// no responders); nothing was written.
	ErrUnavailable = errors.New("txn: store unavailable")
)

// ConflictError says which key moved. It matches ErrConflict.
type ConflictError struct {
	// Key is the key that moved, or "" when the server reported the
	// conflict without naming it and a follow-up read could not find it.
	Key string
	// Expected is the revision the transaction read (0: absent).
	Expected uint64
	// Actual is the revision found at commit time, 0 when unknown.
	Actual uint64
	// Busy is set when the server refused the check because another commit
	// on the same key was still in flight (error 10164); the key may not
	// have moved yet.
	Busy bool
}

func (e *ConflictError) Error() string {
	switch {
	case e.Key == "":
		return fmt.Sprintf("txn: conflict: a key moved (server found revision %d)", e.Actual)
	case e.Busy:
		return fmt.Sprintf("txn: conflict on %q: another commit on it is in flight (read at revision %d)", e.Key, e.Expected)
	default:
		return fmt.Sprintf("txn: conflict on %q: read at revision %d, now at %d", e.Key, e.Expected, e.Actual)
	}
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
