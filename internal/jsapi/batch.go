package jsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BatchRequest asks a replica for up to Batch messages from sequence Seq
// on, only those on NextBySubject (wildcards allowed) when set; or, with
// MultiLast, for the last message on each subject.
type BatchRequest struct {
	Seq           uint64 `json:"seq,omitempty"`
	NextBySubject string `json:"next_by_subj,omitempty"`
	// MultiLast asks instead for the last message of each subject these
	// filters match (wildcards allowed), as of UpToSeq when set.
	MultiLast []string `json:"multi_last,omitempty"`
	UpToSeq   uint64   `json:"up_to_seq,omitempty"`
	Batch     int      `json:"batch"`
	// MaxBytes stops the batch once this many bytes are sent (0: the
	// server's default).
	MaxBytes int `json:"max_bytes,omitempty"`
}

// batchTimeout bounds the wait for the next message of a batch.
const batchTimeout = 3 * time.Second

// GetBatch reads messages of stream in sequence order with one direct
// get request ($JS.API.DIRECT.GET, allow_direct; any replica answers, so
// it may lag the leader) and hands each to fn, until the batch ends, fn
// returns false, or ctx ends. No message from Seq on: no call, no error.
func GetBatch(ctx context.Context, nc *nats.Conn, stream string, req BatchRequest, fn func(*Msg) bool) error {
	if req.Batch <= 0 {
		return fmt.Errorf("direct get batch of %d", req.Batch)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	inbox := nc.NewRespInbox()
	// A synchronous subscription queues what arrives while fn works (up
	// to the client's pending limits); a channel would drop past its size.
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("direct get batch: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return fmt.Errorf("direct get batch: %w", err)
	}
	for {
		wait, cancel := context.WithTimeout(ctx, batchTimeout)
		m, err := sub.NextMsgWithContext(wait)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("direct get batch %s: no message for %s", stream, batchTimeout)
		case err != nil:
			return fmt.Errorf("direct get batch %s: %w", stream, err)
		}
		switch st := m.Header.Get("Status"); st {
		case "":
		case "204", "404": // end of batch; nothing at or after Seq
			return nil
		case "503":
			return fmt.Errorf("direct get batch %s: %w", stream, nats.ErrNoResponders)
		default:
			code, _ := strconv.Atoi(st)
			return &jetstream.APIError{Code: code, Description: m.Header.Get("Description")}
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("direct get answer without a sequence: %w", err)
		}
		stamp, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		if !fn(&Msg{Subject: m.Header.Get(jetstream.SubjectHeader), Seq: seq, Header: m.Header, Data: m.Data, Time: stamp}) {
			return nil
		}
	}
}
