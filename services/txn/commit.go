package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/streams"
)

// Commit is a transaction ready to commit: the revision each key was read
// at and the writes and deletes to apply if none of them moved.
type Commit struct {
	// Reads maps each key the transaction read to the revision it read
	// (0: the key did not exist). A written or deleted key that is also in
	// Reads must still be at that revision; a key only read is validated by
	// a marker in the same atomic batch.
	Reads map[string]uint64
	// Writes maps keys to their new values.
	Writes map[string][]byte
	// Deletes lists keys to delete (a KV delete marker, as `nats kv del`).
	Deletes []string
}

// Keys returns every key the commit touches, sorted, each once.
func (c Commit) Keys() []string {
	keys := make([]string, 0, len(c.Reads)+len(c.Writes)+len(c.Deletes))
	for k := range c.Reads {
		keys = append(keys, k)
	}
	for k := range c.Writes {
		keys = append(keys, k)
	}
	keys = append(keys, c.Deletes...)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Empty reports whether the commit touches no key.
func (c Commit) Empty() bool { return len(c.Reads) == 0 && len(c.Writes) == 0 && len(c.Deletes) == 0 }

type opKind uint8

const (
	opCheck opKind = iota // validate a key only read
	opPut
	opDelete
)

// op is one message of a commit.
type op struct {
	key       string
	kind      opKind
	value     []byte
	expect    uint64
	hasExpect bool
}

// plan validates a commit and turns it into ops sorted by key.
func (s *Store) plan(c Commit) ([]op, error) {
	ops := make([]op, 0, len(c.Reads)+len(c.Writes)+len(c.Deletes))
	for k, v := range c.Writes {
		if err := ValidateKey(k); err != nil {
			return nil, err
		}
		if len(v) > s.maxValueBytes {
			return nil, fmt.Errorf("%w: %q is %d bytes, the limit is %d", ErrValueTooLarge, k, len(v), s.maxValueBytes)
		}
		o := op{key: k, kind: opPut, value: v}
		o.expect, o.hasExpect = c.Reads[k]
		ops = append(ops, o)
	}
	seen := make(map[string]bool, len(c.Deletes))
	for _, k := range c.Deletes {
		if err := ValidateKey(k); err != nil {
			return nil, err
		}
		if _, w := c.Writes[k]; w {
			return nil, fmt.Errorf("%w: %q is both written and deleted", ErrInvalidCommit, k)
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		o := op{key: k, kind: opDelete}
		o.expect, o.hasExpect = c.Reads[k]
		ops = append(ops, o)
	}
	for k, rev := range c.Reads {
		if err := ValidateKey(k); err != nil {
			return nil, err
		}
		if _, w := c.Writes[k]; w || seen[k] {
			continue
		}
		ops = append(ops, op{key: k, kind: opCheck, expect: rev, hasExpect: true})
	}
	if len(ops) > s.maxKeys {
		return nil, fmt.Errorf("%w: %d keys, one atomic batch carries at most %d", ErrTooManyKeys, len(ops), s.maxKeys)
	}
	slices.SortFunc(ops, func(a, b op) int { return strings.Compare(a.key, b.key) })
	return ops, nil
}

// Commit applies c atomically: every write and delete, and a validation
// marker for every key only read, go in one JetStream atomic batch in which
// each key carries Nats-Expected-Last-Subject-Sequence = its read
// revision. Either all of it is written or none of it.
//
// It returns the new revision of every written or deleted key. A key that
// moved gives a *ConflictError (errors.Is ErrConflict); invalid input gives
// ErrInvalidKey, ErrReservedKey, ErrValueTooLarge, ErrTooManyKeys or
// ErrInvalidCommit; a stream without leader for the whole operation timeout
// gives ErrUnavailable; a lost acknowledgement that retries could not
// resolve gives ErrUnknownOutcome.
//
// A commit of one message (one key written, nothing else read) is
// published as a plain message with the same expectation: a batch of one
// is atomic anyway and costs an extra staging step on the server. A commit
// that only read one key has nothing to validate and writes nothing.
func (s *Store) Commit(ctx context.Context, c Commit) (map[string]uint64, error) {
	ops, err := s.plan(c)
	if err != nil {
		return nil, fmt.Errorf("txn: commit: %w", err)
	}
	return s.commitPlanned(ctx, ops)
}

// commitPlanned commits validated ops.
func (s *Store) commitPlanned(ctx context.Context, ops []op) (map[string]uint64, error) {
	return s.queuePlanned(ops)(ctx)
}

// queuePlanned queues validated ops behind every commit queued before on
// this store (commits sharing a key run in that order) and returns the
// function that waits for their outcome.
func (s *Store) queuePlanned(ops []op) func(ctx context.Context) (map[string]uint64, error) {
	if len(ops) == 0 || (len(ops) == 1 && ops[0].kind == opCheck) {
		return func(context.Context) (map[string]uint64, error) { return map[string]uint64{}, nil }
	}
	m := s.group.enqueue(ops)
	return func(ctx context.Context) (map[string]uint64, error) {
		revs, err := s.group.await(ctx, s, m)
		if err != nil {
			return nil, fmt.Errorf("txn: commit: %w", err)
		}
		return revs, nil
	}
}

// commitBackoff spaces the resends of one commit.
var commitBackoff = jsapi.Backoff{Base: 5 * time.Millisecond, Max: 250 * time.Millisecond}

// commitOps sends the ops and resolves the outcome. Every attempt carries
// the same Nats-Msg-Id, so a resend after a lost acknowledgement is
// recognised by the stream as a duplicate instead of being applied twice.
// uncertain says an earlier attempt under the same id (a group batch) may
// have been applied.
//
// The loop is its own rather than a jsapi.Retry: giving up means
// ErrUnknownOutcome or ErrUnavailable depending on what earlier attempts
// may have written, a "busy" refusal is resent on its own short schedule
// without advancing the backoff, and an answer that ends the commit (a
// conflict, an applied duplicate) must win over a context that ended
// meanwhile, where Retry.Do gives up as soon as the context is done.
func (s *Store) commitOps(ctx context.Context, id string, ops []op, uncertain bool) (map[string]uint64, error) {
	deadline := time.Now().Add(s.opTimeout)
	busyRetries, resends := 0, 0
	for {
		ack, err := s.send(ctx, id, ops)
		switch {
		case err == nil && ack.Error == nil:
			return revisions(ops, ack.Seq), nil

		case err == nil && ack.Error.ErrorCode == jsapi.CodeBatchDuplicate:
			// An earlier attempt of this very commit was applied.
			return s.resolveApplied(ctx, id, ops)

		case err == nil && (ack.Error.ErrorCode == jsapi.CodeWrongLastSequence || ack.Error.ErrorCode == jsapi.CodeWrongLastSequenceConstant):
			busy := ack.Error.ErrorCode == jsapi.CodeWrongLastSequenceConstant
			if busy && busyRetries < 3 && !uncertain {
				// Another commit on one of our keys is in flight; it may
				// have only validated the key. Try the same commit again.
				busyRetries++
				if err := jsapi.Sleep(ctx, jsapi.Jitter(time.Duration(busyRetries)*2*time.Millisecond)); err != nil {
					return nil, err
				}
				continue
			}
			if uncertain {
				if revs, ok := s.appliedBy(ctx, id, ops); ok {
					return revs, nil
				}
				return nil, fmt.Errorf("%w: an earlier attempt timed out and a resend found the keys changed (%s)", ErrUnknownOutcome, ack.Error.Description)
			}
			return nil, s.conflict(ctx, ops, ack.Error, busy)

		case err == nil && jsapi.IsStorageFull(ack.Error):
			// Nothing was written, and retrying will not help until an
			// operator frees space.
			return nil, fmt.Errorf("%w: JetStream storage is full: %w", ErrUnavailable, ack.Error)

		case err == nil && jsapi.IsTransient(ack.Error):
			err = ack.Error

		case err == nil:
			return nil, ack.Error

		case errors.Is(err, nats.ErrNoResponders):
			// Nobody took the request: nothing was written.

		case ctx.Err() == nil && jsapi.IsTransient(err):
			// The request may have reached the stream: from now on a
			// conflict may be our own earlier write.
			uncertain = true

		default:
			if uncertain {
				return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
			}
			return nil, err
		}
		wait := commitBackoff.Delay(resends)
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			if uncertain {
				return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		s.log.Debug("commit retry", "txn", id, "err", err, "uncertain", uncertain)
		if serr := jsapi.Sleep(ctx, wait); serr != nil {
			if uncertain {
				return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, serr)
			}
			return nil, serr
		}
		resends++
	}
}

// revisions maps each written key to its stream sequence, given the
// sequence of the batch's last message.
func revisions(ops []op, last uint64) map[string]uint64 {
	first := last - uint64(len(ops)) + 1
	revs := make(map[string]uint64, len(ops))
	for i, o := range ops {
		if o.kind != opCheck {
			revs[o.key] = first + uint64(i)
		}
	}
	return revs
}

// send publishes the ops of one commit once, as one atomic unit.
func (s *Store) send(ctx context.Context, id string, ops []op) (jsapi.PubAck, error) {
	actx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	ack, _, err := s.publishAtomic(actx, s.messages(id, ops))
	return ack, err
}

// publishAtomic publishes msgs as one atomic unit and returns the
// stream's acknowledgement. One message is atomic by itself and goes as a
// plain publish, without the staging step of a batch; more go as an
// atomic batch under a fresh batch id, the last one carrying the commit.
// requested reports whether the final request went out: after an error
// with requested set, the stream may have applied the messages.
func (s *Store) publishAtomic(ctx context.Context, msgs []*nats.Msg) (ack jsapi.PubAck, requested bool, err error) {
	last := len(msgs) - 1
	what := "publish"
	if last > 0 {
		what = "batch commit"
		batch := newID()
		for i, m := range msgs {
			m.Header.Set(streams.BatchIDHeader, batch)
			m.Header.Set(streams.BatchSequenceHeader, strconv.Itoa(i+1))
		}
		msgs[last].Header.Set(streams.BatchCommitHeader, "1")
		for _, m := range msgs[:last] {
			if err := s.nc.PublishMsg(m); err != nil {
				return ack, false, err
			}
		}
	}
	resp, err := s.nc.RequestMsgWithContext(ctx, msgs[last])
	if err != nil {
		return ack, true, err
	}
	if ack, err = jsapi.ParsePubAck(resp.Data); err != nil {
		return ack, true, fmt.Errorf("%s: %w", what, err)
	}
	return ack, true, nil
}

// messages builds the stream messages of one commit. The first carries
// the commit's id as its Nats-Msg-Id, so that a resend of an applied
// commit is refused as a duplicate.
func (s *Store) messages(id string, ops []op) []*nats.Msg {
	msgs := make([]*nats.Msg, len(ops))
	for i, o := range ops {
		msgs[i] = s.message(id, o)
	}
	msgs[0].Header.Set(jetstream.MsgIDHeader, id)
	return msgs
}

// message builds the stream message of one op.
func (s *Store) message(id string, o op) *nats.Msg {
	m := &nats.Msg{Header: make(nats.Header, 6)}
	if o.hasExpect {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(o.expect, 10))
	}
	switch o.kind {
	case opPut:
		m.Subject = streams.KVSubject(s.bucket, o.key)
		m.Data = o.value
		m.Header.Set(streams.TxnIDHeader, id)
	case opDelete:
		m.Subject = streams.KVSubject(s.bucket, o.key)
		m.Header.Set(streams.KVOperationHeader, streams.KVOperationDelete)
		m.Header.Set(streams.TxnIDHeader, id)
	case opCheck:
		m.Subject = streams.KVSubject(s.bucket, MarkerKey)
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, streams.KVSubject(s.bucket, o.key))
		m.Header.Set(streams.KVOperationHeader, streams.KVOperationDelete)
		m.Header.Set(jetstream.MsgTTLHeader, markerTTL)
	}
	return m
}

// resolveApplied returns the revisions of a commit the stream reported as
// already applied: they follow from the current message of a written key
// when that is still ours; otherwise they are unknown and reported as 0.
func (s *Store) resolveApplied(ctx context.Context, id string, ops []op) (map[string]uint64, error) {
	if revs, ok := s.appliedBy(ctx, id, ops); ok {
		return revs, nil
	}
	revs := make(map[string]uint64, len(ops))
	for _, o := range ops {
		if o.kind != opCheck {
			revs[o.key] = 0
		}
	}
	return revs, nil
}

// appliedBy reports whether a written key's current message was written by
// commit id, and if so the commit's revisions.
func (s *Store) appliedBy(ctx context.Context, id string, ops []op) (map[string]uint64, bool) {
	for i, o := range ops {
		if o.kind == opCheck {
			continue
		}
		m, err := s.load(ctx, o.key)
		if err != nil || !m.found || m.hdr.Get(streams.TxnIDHeader) != id {
			continue
		}
		// Op i was stored at first+i; revisions wants the last sequence.
		return revisions(ops, m.seq-uint64(i)+uint64(len(ops))-1), true
	}
	return nil, false
}

// conflict builds the *ConflictError for a rejected commit. The server
// names the revision it found but not the key, so the keys with an
// expectation are read again, in batch order, to find the first that moved.
func (s *Store) conflict(ctx context.Context, ops []op, e *jetstream.APIError, busy bool) error {
	var actual uint64
	if i := strings.LastIndexByte(e.Description, ' '); i >= 0 {
		actual, _ = strconv.ParseUint(e.Description[i+1:], 10, 64)
	}
	var expecting []op
	for _, o := range ops {
		if o.hasExpect {
			expecting = append(expecting, o)
		}
	}
	if len(expecting) == 1 && !busy {
		return &ConflictError{Key: expecting[0].key, Expected: expecting[0].expect, Actual: actual}
	}
	keys := make([]string, len(expecting))
	for i, o := range expecting {
		keys[i] = o.key
	}
	lctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	cur, err := s.GetMany(lctx, keys)
	if err == nil {
		for _, o := range expecting {
			if rev := cur[o.key].Revision; rev != o.expect {
				return &ConflictError{Key: o.key, Expected: o.expect, Actual: rev}
			}
		}
	}
	return &ConflictError{Actual: actual, Busy: busy}
}
