package jsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// GetRequest names the message to get: by sequence, or the last one on a
// subject (LastBySubject set).
type GetRequest struct {
	Seq           uint64 `json:"seq,omitempty"`
	LastBySubject string `json:"last_by_subj,omitempty"`
}

// Msg is a stored message.
type Msg struct {
	Subject string
	Seq     uint64
	Header  nats.Header
	Data    []byte
	Time    time.Time
}

// Via chooses who answers a get.
type Via int

const (
	// Leader asks the stream leader ($JS.API.STREAM.MSG.GET): a strong
	// read that sees every acknowledged write.
	Leader Via = iota
	// Direct asks any replica ($JS.API.DIRECT.GET, the stream needs
	// allow_direct): it spreads reads and may lag the leader.
	Direct
)

// GetMsg fetches one message of stream. A message that does not exist
// returns an error wrapping jetstream.ErrMsgNotFound; an API error is
// returned as a *jetstream.APIError (see IsTransient). GetMsg makes one
// attempt.
func GetMsg(ctx context.Context, nc *nats.Conn, stream string, req GetRequest, via Via) (*Msg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if via == Direct {
		return directGet(ctx, nc, stream, body)
	}
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Response
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := Decode(m.Data, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == CodeMessageNotFound {
			return nil, fmt.Errorf("%w: %w", jetstream.ErrMsgNotFound, resp.Error)
		}
		return nil, resp.Error
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("empty answer from %s", m.Subject)
	}
	out := &Msg{Subject: resp.Message.Subject, Seq: resp.Message.Seq, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if out.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("decode message headers: %w", err)
		}
	}
	return out, nil
}

// directGet asks any replica; the answer is the message itself with its
// coordinates in headers, or a status header.
func directGet(ctx context.Context, nc *nats.Conn, stream string, body []byte) (*Msg, error) {
	m, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, body)
	if err != nil {
		return nil, err
	}
	if st := m.Header.Get("Status"); st != "" {
		desc := m.Header.Get("Description")
		if st == "404" {
			return nil, fmt.Errorf("%w: %s", jetstream.ErrMsgNotFound, desc)
		}
		code, _ := strconv.Atoi(st)
		return nil, &jetstream.APIError{Code: code, Description: desc}
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("direct get answer without a sequence: %w", err)
	}
	stamp, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	return &Msg{Subject: m.Header.Get(jetstream.SubjectHeader), Seq: seq, Header: m.Header, Data: m.Data, Time: stamp}, nil
}
