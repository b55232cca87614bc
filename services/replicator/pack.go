package replicator

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/platform/platform/streams"
	"github.com/prometheus/client_golang/prometheus"
)

// packer turns batches of events into stream messages: one per event, or
// envelopes of the events of a batch that share a subject; compressed
// above a threshold; each with a message id (so retries are idempotent)
// and a reply subject that names it in the flight tracker. It does no I/O
// and keeps no clock; pack is called by one goroutine at a time.
type packer struct {
	envelope      bool
	compression   Compression
	compressAbove int
	// maxEvent bounds one event: payload, headers, subject and id.
	maxEvent int
	// idPrefix starts every message id the packer makes; replyPrefix
	// every reply subject.
	idPrefix    string
	replyPrefix string
	// ratios observes the compression ratio of each compressed message.
	ratios prometheus.Observer
	// key numbers the units; the last one made.
	key uint64
}

// check validates an event for packing: no reserved header, and small
// enough for one message. It takes a Nats-Msg-Id header as m.ID when m.ID
// is empty, and returns the size counted against the buffer and the batch.
func (k *packer) check(m *Message) (int, error) {
	size := len(m.Data)
	for h, vs := range m.Header {
		if strings.EqualFold(h, streams.ContentEncodingHeader) || strings.HasPrefix(strings.ToLower(h), "platform-envelope") {
			return 0, fmt.Errorf("publish %s: %w: %s", m.Subject, ErrReservedHeader, h)
		}
		size += len(h) + 4
		for _, v := range vs {
			size += len(v) + 2
		}
		if m.ID == "" && h == jetstream.MsgIDHeader && len(vs) > 0 {
			m.ID = vs[0]
		}
	}
	if size+len(m.Subject)+len(m.ID) > k.maxEvent {
		return 0, fmt.Errorf("publish %s: %w: %d bytes, the limit is %d", m.Subject, ErrTooLarge, size, k.maxEvent)
	}
	if k.envelope {
		// Counted as the most it adds to an envelope, so that a batch's
		// bytes bound the size of its envelopes.
		size = entrySize(m.Data, m.Header)
	}
	return size, nil
}

// pack turns a batch into stream messages, setting each event's ID.
func (k *packer) pack(events []*pending) []*unit {
	if !k.envelope {
		units := make([]*unit, 0, len(events))
		for _, e := range events {
			units = append(units, k.single(e))
		}
		return units
	}
	// Group by subject, keeping arrival order within a subject.
	var units []*unit
	groups := make(map[string][]*pending)
	var order []string
	for _, e := range events {
		if e.msg.ID != "" || hasNatsHeader(e.msg.Header) {
			units = append(units, k.single(e))
			continue
		}
		if _, ok := groups[e.msg.Subject]; !ok {
			order = append(order, e.msg.Subject)
		}
		groups[e.msg.Subject] = append(groups[e.msg.Subject], e)
	}
	for _, subj := range order {
		evs := groups[subj]
		if len(evs) == 1 {
			units = append(units, k.single(evs[0]))
			continue
		}
		units = append(units, k.envelopeOf(subj, evs))
	}
	return units
}

func hasNatsHeader(h nats.Header) bool {
	for k := range h {
		if len(k) > 5 && strings.EqualFold(k[:5], "nats-") {
			return true
		}
	}
	return false
}

// single makes the stream message of one event.
func (k *packer) single(e *pending) *unit {
	k.key++
	key := k.key
	if e.msg.ID == "" {
		e.msg.ID = k.idPrefix + strconv.FormatUint(key, 36)
	}
	h := make(nats.Header, len(e.msg.Header)+2)
	for name, v := range e.msg.Header {
		h[name] = v
	}
	h[jetstream.MsgIDHeader] = []string{e.msg.ID}
	data := e.msg.Data
	if k.compression != NoCompression && len(data) >= k.compressAbove && len(data) > 0 {
		if c := k.compression.Compress(data); c != nil {
			k.ratios.Observe(float64(len(data)) / float64(len(c)))
			data = c
			h[streams.ContentEncodingHeader] = []string{k.compression.String()}
		}
	}
	return &unit{
		key:    key,
		events: []*pending{e},
		msg:    &nats.Msg{Subject: e.msg.Subject, Reply: k.replyPrefix + strconv.FormatUint(key, 36), Header: h, Data: data},
	}
}

// envelopeOf packs events sharing a subject into one stream message.
func (k *packer) envelopeOf(subj string, evs []*pending) *unit {
	k.key++
	key := k.key
	id := k.idPrefix + strconv.FormatUint(key, 36)
	n := 5
	for _, e := range evs {
		n += entrySize(e.msg.Data, e.msg.Header)
	}
	buf := appendEnvelopeHeader(make([]byte, 0, n), len(evs))
	for _, e := range evs {
		buf = appendEntry(buf, e.msg.Data, e.msg.Header)
	}
	h := nats.Header{
		jetstream.MsgIDHeader:       []string{id},
		streams.EnvelopeHeader:      []string{envelopeVersion},
		streams.EnvelopeCountHeader: []string{strconv.Itoa(len(evs))},
		streams.EnvelopeKeysHeader:  []string{keySummary(subj, evs)},
	}
	data := buf
	if k.compression != NoCompression && len(buf) >= k.compressAbove {
		if c := k.compression.Compress(buf); c != nil {
			k.ratios.Observe(float64(len(buf)) / float64(len(c)))
			data = c
			h[streams.ContentEncodingHeader] = []string{k.compression.String()}
		}
	}
	setEntryIDs(id, evs)
	return &unit{
		key:      key,
		events:   evs,
		envelope: true,
		msg:      &nats.Msg{Subject: subj, Reply: k.replyPrefix + strconv.FormatUint(key, 36), Header: h, Data: data},
	}
}

// setEntryIDs sets the ID of each event of an envelope to
// "<envelope id>:<index>".
func setEntryIDs(id string, evs []*pending) {
	entryIDs(id, len(evs), func(i int, s string) { evs[i].msg.ID = s })
}

// entryIDs calls set with "<id>:<i>" for each i below n. The IDs share
// one string: one allocation per envelope, not one per event.
func entryIDs(id string, n int, set func(i int, s string)) {
	var sb strings.Builder
	sb.Grow(n * (len(id) + 1 + digits(n)))
	var num [20]byte
	for i := range n {
		sb.WriteString(id)
		sb.WriteByte(':')
		sb.Write(strconv.AppendInt(num[:0], int64(i), 10))
	}
	all := sb.String()
	start := 0
	for i := range n {
		end := start + len(id) + 1 + digits(i)
		set(i, all[start:end])
		start = end
	}
}

// digits returns how many decimal digits n (not negative) has.
func digits(n int) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}
