package detector

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector/accrual"
	"github.com/platform/platform/streams"
)

// kvOperationHeader and kvDelete mark a KV delete, as nats.go's KeyValue
// Delete writes it.
const (
	kvOperationHeader = "KV-Operation"
	kvDelete          = "DEL"
)

// Messages turns one evaluation into what the active detector publishes:
// each transition to stream DETECTOR on streams.DetectorSubject, as JSON,
// with a message id (the Nats-Msg-Id header) so JetStream drops the same
// transition published twice during a handover; each record to KV MEMBERS
// under its key; each forgotten key as a KV delete. A record that cannot
// be encoded is left out and named in the error; the rest are returned.
func Messages(res accrual.TickResult) ([]*nats.Msg, error) {
	out := make([]*nats.Msg, 0, len(res.Transitions)+len(res.Writes)+len(res.Deletes))
	var errs []error
	for _, c := range res.Transitions {
		b, err := json.Marshal(c.Transition)
		if err != nil {
			errs = append(errs, fmt.Errorf("encode transition of %s: %w", c.Key(), err))
			continue
		}
		m := nats.NewMsg(streams.DetectorSubject(string(c.State), c.Service, c.Instance))
		m.Data = b
		m.Header.Set(service.HeaderContentType, service.ContentTypeJSON)
		m.Header.Set(jetstream.MsgIDHeader, msgID(c))
		out = append(out, m)
	}
	for _, w := range res.Writes {
		b, err := json.Marshal(w)
		if err != nil {
			errs = append(errs, fmt.Errorf("encode member %s: %w", w.Key(), err))
			continue
		}
		out = append(out, &nats.Msg{Subject: streams.KVSubject(streams.BucketMembers, w.Key()), Data: b})
	}
	for _, k := range res.Deletes {
		m := nats.NewMsg(streams.KVSubject(streams.BucketMembers, k))
		m.Header.Set(kvOperationHeader, kvDelete)
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

// msgID names a transition the same on every detector that derives it:
// the instance, the new state, the sequence of its last heartbeat and the
// arrival of that heartbeat to a tenth of a second (sequences restart with
// the process; the time tells incarnations apart).
func msgID(c accrual.Change) string {
	return c.Key() + "." + string(c.State) + "." + strconv.FormatUint(c.Seq, 10) + "." +
		strconv.FormatInt(c.LastSeen.UnixMilli()/100, 10)
}
