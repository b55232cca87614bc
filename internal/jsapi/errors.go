// Package jsapi is the platform's one layer over the JetStream wire API
// where nats.go offers no helper: API errors decoded to nats.go's
// jetstream.APIError with named codes, the one rule for what is transient,
// the publish acknowledgement, message get (through the stream leader or
// direct from any replica), and a context-aware backoff with jitter.
package jsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream API error codes the platform branches on, as nats-server names
// them (server/jetstream_errors_generated.go).
const (
	CodeClusterNoPeers            jetstream.ErrorCode = 10005 // JSClusterNoPeersErrF: no suitable peers for placement
	CodeClusterNotAvail           jetstream.ErrorCode = 10008 // JSClusterNotAvailErr
	CodeClusterNotLeader          jetstream.ErrorCode = 10009 // JSClusterNotLeaderErr
	CodeMessageNotFound                               = jetstream.JSErrCodeMessageNotFound
	CodeStreamNotFound                                = jetstream.JSErrCodeStreamNotFound
	CodeWrongLastSequence                             = jetstream.JSErrCodeStreamWrongLastSequence
	CodeStreamOffline             jetstream.ErrorCode = 10118 // JSStreamOfflineErr
	CodeDuplicateInProcess        jetstream.ErrorCode = 10158 // JSStreamDuplicateMessageConflict
	CodeExpectedLastSeqNotReady   jetstream.ErrorCode = 10163 // JSStreamExpectedLastSeqPerSubjectNotReady
	CodeWrongLastSequenceConstant                     = jetstream.JSErrCodeStreamWrongLastSequenceConstant
	CodeBatchIncomplete           jetstream.ErrorCode = 10176 // JSAtomicPublishIncompleteBatchErr
	CodeStreamOfflineReason       jetstream.ErrorCode = 10194 // JSStreamOfflineReasonErrF
	CodeBatchDuplicate            jetstream.ErrorCode = 10201 // JSAtomicPublishContainsDuplicateMessageErr
	CodeBatchTooManyInflight      jetstream.ErrorCode = 10210 // JSAtomicPublishTooManyInflight
	CodeAccountResourcesExceeded  jetstream.ErrorCode = 10002 // JSAccountResourcesExceededErr
	CodeInsufficientResources     jetstream.ErrorCode = 10023 // JSInsufficientResourcesErr: the server's store is full
	CodeStorageResourcesExceeded  jetstream.ErrorCode = 10047 // JSStorageResourcesExceededErr
)

// transientCodes are the API errors that mean the request was not carried
// out for now and the same request may succeed later: the stream or the
// cluster has no leader (yet), a leader is moving, a batch was lost in a
// leader change, too many batches or the same message id are in flight.
var transientCodes = map[jetstream.ErrorCode]bool{
	CodeClusterNotAvail:         true,
	CodeClusterNotLeader:        true,
	CodeStreamOffline:           true,
	CodeStreamOfflineReason:     true,
	CodeDuplicateInProcess:      true,
	CodeExpectedLastSeqNotReady: true,
	CodeBatchIncomplete:         true,
	CodeBatchTooManyInflight:    true,
}

// IsTransient is the platform's one rule for "another attempt may
// succeed": no responders (no stream leader listening), a request or
// context timeout, a connection that is reconnecting, no answer from the
// stream, or an API error in the transient set or with HTTP status 503.
// Whether the caller's own context is still live is the caller's
// business: IsTransient judges the error alone. A full store (IsStorageFull)
// is not transient although the server answers 503: it lasts until an
// operator frees space, so callers fail fast with a clear reason instead
// of retrying until their deadline.
func IsTransient(err error) bool {
	if err == nil || IsStorageFull(err) {
		return false
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		return transientCodes[ae.ErrorCode] || ae.Code == 503
	}
	return false
}

// IsStorageFull reports whether err is or wraps the API error of a write
// refused because JetStream storage is full: the server's max_file_store
// (or max_memory_store) or the account's storage limit is reached.
func IsStorageFull(err error) bool {
	return HasCode(err, CodeInsufficientResources) || HasCode(err, CodeStorageResourcesExceeded) ||
		HasCode(err, CodeAccountResourcesExceeded)
}

// HasCode reports whether err is or wraps an API error with code.
func HasCode(err error, code jetstream.ErrorCode) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.ErrorCode == code
}

// Response is the part every JetStream API answer shares.
type Response struct {
	Error *jetstream.APIError `json:"error,omitempty"`
}

// Decode unmarshals an API answer into v, which must embed Response or
// have its own Error field; it returns the decoding error, else nil. Use
// Err to read the API error.
func Decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode jetstream answer %.64q: %w", data, err)
	}
	return nil
}

// Err returns the API error of r as an error, or nil (never a typed nil).
func (r Response) Err() error {
	if r.Error == nil {
		return nil
	}
	return r.Error
}

// PubAck is a stream's answer to a publish or an atomic batch commit.
type PubAck struct {
	Response
	// Stream is the stream that stored the message.
	Stream string `json:"stream"`
	// Seq is its sequence (the last message's for a batch).
	Seq uint64 `json:"seq"`
	// Duplicate is set when the message id was already stored.
	Duplicate bool `json:"duplicate,omitempty"`
	// Count is how many messages a batch commit stored.
	Count int `json:"count,omitempty"`
	// BatchID is the committed batch's id.
	BatchID string `json:"batch,omitempty"`
}

// ParsePubAck decodes a publish acknowledgement. A bad body is an error;
// an API error is returned in the ack's Error for the caller to judge.
func ParsePubAck(data []byte) (PubAck, error) {
	if a, ok := parseCommonPubAck(data); ok {
		return a, nil
	}
	var a PubAck
	if err := Decode(data, &a); err != nil {
		return PubAck{}, err
	}
	if a.Error == nil && a.Stream == "" {
		return PubAck{}, fmt.Errorf("not a jetstream acknowledgement: %.64q", data)
	}
	return a, nil
}

// parseCommonPubAck reads the acknowledgement of a plain publish,
// {"stream":"EVENTS","seq":42} with an optional "domain" and
// "duplicate":true, without reflection: at tens of thousands of acks a
// second encoding/json costs a measurable share of a core. Anything else
// (errors, batch commits, escapes) is left to encoding/json (ok false).
func parseCommonPubAck(b []byte) (PubAck, bool) {
	var a PubAck
	if !bytes.HasPrefix(b, []byte(`{"stream":"`)) || bytes.Contains(b, []byte(`"error"`)) ||
		bytes.Contains(b, []byte(`"batch"`)) || bytes.Contains(b, []byte(`"count"`)) {
		return a, false
	}
	rest := b[len(`{"stream":"`):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return a, false
	}
	a.Stream = string(rest[:end])
	i := bytes.Index(rest, []byte(`"seq":`))
	if i < 0 {
		return a, false
	}
	digits := rest[i+len(`"seq":`):]
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(digits[:n]), 10, 64)
	if err != nil {
		return a, false
	}
	a.Seq = seq
	a.Duplicate = bytes.Contains(rest, []byte(`"duplicate":true`)) || bytes.Contains(rest, []byte(`"duplicate": true`))
	return a, true
}
