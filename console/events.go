package console

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

const (
	// maxPage bounds events per page.
	maxPage = 500
	// maxScan bounds the stream messages one events request reads.
	maxScan = 10000
	// maxParam bounds topic and text filters.
	maxParam = 256
	// previewBytes is how much of a body a page shows.
	previewBytes = 256
	// maxBody is how much of one event's body is sent.
	maxBody = 1 << 20
	// batchBytes bounds one direct get batch's bytes.
	batchBytes = 8 << 20
)

// eventView is one event of a page or of the tail.
type eventView struct {
	Seq     uint64      `json:"seq"`
	Index   int         `json:"index"`
	Count   int         `json:"count"`
	Subject string      `json:"subject"`
	Topic   string      `json:"topic"`
	Time    time.Time   `json:"time"`
	ID      string      `json:"id"`
	Size    int         `json:"size"`
	Headers nats.Header `json:"headers"`
	Preview string      `json:"preview"`
	Binary  bool        `json:"binary"`
}

func newEventView(e replicator.Event) eventView {
	v := eventView{Seq: e.Pos.Seq, Index: e.Pos.Index, Count: max(e.Pos.Count, 1), Subject: e.Subject,
		Topic: strings.TrimPrefix(e.Subject, streams.EventsPrefix), Time: e.Time.UTC(), ID: e.ID, Size: len(e.Data),
		Headers: e.Header}
	if v.Headers == nil {
		v.Headers = nats.Header{}
	}
	p := e.Data[:min(len(e.Data), previewBytes)]
	if isText(p, len(e.Data) > previewBytes) {
		v.Preview = string(trimRune(p))
	} else {
		v.Binary, v.Preview = true, hex.EncodeToString(p)
	}
	return v
}

// isText reports whether p reads as text: UTF-8 (but for a rune cut at
// the end when p was cut) without control characters other than tab and
// line ends.
func isText(p []byte, cut bool) bool {
	if cut {
		p = trimRune(p)
	}
	if !utf8.Valid(p) {
		return false
	}
	for _, c := range p {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

// trimRune drops a rune cut at the end of p.
func trimRune(p []byte) []byte {
	for i := 0; i < utf8.UTFMax && len(p) > 0 && !utf8.Valid(p); i++ {
		p = p[:len(p)-1]
	}
	return p
}

// eventFilter is what a page or tail keeps: a topic pattern and text.
type eventFilter struct {
	subject string // events.<topic>, wildcards allowed
	text    []byte
}

// parseFilter reads topic and q. A topic is what follows ingest.: tokens
// the platform accepts, or the wildcards * and > as whole tokens (> last).
func parseFilter(r *http.Request) (eventFilter, error) {
	topic, err := strParam(r, "topic", maxParam)
	if err != nil {
		return eventFilter{}, err
	}
	q, err := strParam(r, "q", maxParam)
	if err != nil {
		return eventFilter{}, err
	}
	f := eventFilter{subject: streams.EventsPrefix + ">", text: []byte(q)}
	if topic == "" {
		return f, nil
	}
	toks := strings.Split(topic, ".")
	plain := make([]string, 0, len(toks))
	for i, t := range toks {
		switch {
		case t == "*":
			plain = append(plain, "x")
		case t == ">" && i == len(toks)-1:
			plain = append(plain, "x")
		default:
			plain = append(plain, t)
		}
	}
	if err := streams.CheckTopic(strings.Join(plain, ".")); err != nil {
		return eventFilter{}, badRequest("topic %q: %v (wildcards * and > as whole tokens, > last)", topic, err)
	}
	f.subject = streams.EventSubject(topic)
	return f, nil
}

func (f eventFilter) keep(e replicator.Event) bool {
	if len(f.text) == 0 {
		return true
	}
	if bytes.Contains(e.Data, f.text) || strings.Contains(e.Subject, string(f.text)) {
		return true
	}
	for k, vs := range e.Header {
		if strings.Contains(k, string(f.text)) {
			return true
		}
		for _, v := range vs {
			if strings.Contains(v, string(f.text)) {
				return true
			}
		}
	}
	return false
}

// streamBounds is a page's view of EVENTS.
type streamBounds struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Messages uint64 `json:"messages"`
}

// eventsPage is GET /events.
type eventsPage struct {
	Stream  streamBounds `json:"stream"`
	Events  []eventView  `json:"events"`
	Scanned int          `json:"scanned"`
	Prev    *struct {
		Before uint64 `json:"before"`
	} `json:"prev,omitempty"`
	Next *struct {
		After uint64 `json:"after"`
	} `json:"next,omitempty"`
}

// message is one stream message with its decoded events.
type message struct {
	seq    uint64
	events []replicator.Event
}

func (c *Console) events(ctx context.Context, r *http.Request, _ *session) (any, error) {
	f, err := parseFilter(r)
	if err != nil {
		return nil, err
	}
	limit, err := intParam(r, "limit", 100, 1, maxPage)
	if err != nil {
		return nil, err
	}
	after, hasAfter, err := uintParam(r, "after")
	if err != nil {
		return nil, err
	}
	before, hasBefore, err := uintParam(r, "before")
	if err != nil {
		return nil, err
	}
	if hasAfter && hasBefore {
		return nil, badRequest("give after or before, not both")
	}
	p := c.platform()
	info, err := streamInfo(ctx, p.JS, streams.Events)
	if err != nil {
		return nil, err
	}
	page := eventsPage{Stream: streamBounds{FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Messages: info.State.Msgs}, Events: []eventView{}}
	var msgs []message
	var lo, hi uint64 // the scanned range [lo, hi]
	if hasAfter {
		lo = max(after+1, info.State.FirstSeq)
		msgs, hi, page.Scanned, err = c.forward(ctx, p.Conn, f, lo, int(limit), info.State.LastSeq)
	} else {
		if !hasBefore || before > info.State.LastSeq+1 {
			before = info.State.LastSeq + 1
		}
		hi = before - 1
		msgs, lo, page.Scanned, err = c.backward(ctx, p.Conn, f, before, int(limit), info.State.FirstSeq)
	}
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		for _, e := range m.events {
			page.Events = append(page.Events, newEventView(e))
		}
	}
	if info.State.Msgs > 0 && lo > info.State.FirstSeq {
		page.Prev = &struct {
			Before uint64 `json:"before"`
		}{lo}
	}
	if hi < info.State.LastSeq {
		page.Next = &struct {
			After uint64 `json:"after"`
		}{hi}
	}
	return page, nil
}

func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, unavailable("stream %s does not exist yet", name)
	}
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// forward reads messages from lo on until it holds limit events kept by
// f (ending on a message boundary), maxScan messages were read, or the
// stream ends at last. It returns the messages and the last sequence
// scanned.
func (c *Console) forward(ctx context.Context, nc *nats.Conn, f eventFilter, lo uint64, limit int, last uint64) ([]message, uint64, int, error) {
	var out []message
	events, scanned := 0, 0
	hi := lo - 1
	seq := lo
	for events < limit && scanned < maxScan && seq <= last {
		batch := min(maxScan-scanned, max(limit-events, 1)*2, 1000)
		if len(f.text) > 0 {
			batch = min(maxScan-scanned, 1000)
		}
		n := 0
		err := jsapi.GetBatch(ctx, nc, streams.Events, jsapi.BatchRequest{Seq: seq, NextBySubject: f.subject, Batch: batch, MaxBytes: batchBytes}, func(m *jsapi.Msg) bool {
			n++
			scanned++
			hi, seq = m.Seq, m.Seq+1
			kept := decodeKept(m, f)
			if len(kept) > 0 {
				out = append(out, message{seq: m.Seq, events: kept})
				events += len(kept)
			}
			return events < limit && scanned < maxScan
		})
		if err != nil {
			return nil, 0, 0, err
		}
		if n == 0 { // nothing more on the filter
			hi = last
			break
		}
	}
	if events < limit && scanned < maxScan {
		hi = max(hi, last)
	}
	return out, hi, scanned, nil
}

// backward reads the messages before before, newest first in windows
// that grow four times over, until it holds limit events kept by f, the
// stream's first message is reached, or maxScan messages were read. It
// returns them oldest first and the lowest sequence scanned.
func (c *Console) backward(ctx context.Context, nc *nats.Conn, f eventFilter, before uint64, limit int, first uint64) ([]message, uint64, int, error) {
	if before <= first {
		return nil, first, 0, nil
	}
	var out []message // newest window first, each window oldest first
	events, scanned := 0, 0
	end := before // exclusive end of the next window
	window := uint64(limit)
	for events < limit && end > first && scanned < maxScan {
		lo := first
		if end > first+window {
			lo = end - window
		}
		var got []message
		n := 0
		err := jsapi.GetBatch(ctx, nc, streams.Events, jsapi.BatchRequest{Seq: lo, NextBySubject: f.subject, Batch: int(min(end-lo, uint64(maxScan-scanned))), MaxBytes: batchBytes}, func(m *jsapi.Msg) bool {
			if m.Seq >= end {
				return false
			}
			n++
			if kept := decodeKept(m, f); len(kept) > 0 {
				got = append(got, message{seq: m.Seq, events: kept})
			}
			return true
		})
		if err != nil {
			return nil, 0, 0, err
		}
		scanned += n
		// Keep the newest of this window, as many as still needed.
		for i := len(got) - 1; i >= 0 && events < limit; i-- {
			out = append(out, got[i])
			events += len(got[i].events)
		}
		if events >= limit {
			// The page starts at the oldest message kept.
			lo = out[len(out)-1].seq
		}
		end = lo
		window *= 4
	}
	// out is newest first: reverse it.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, end, scanned, nil
}

// decodeKept decodes one message and returns its events that f keeps; a
// message that does not decode is shown as one raw event.
func decodeKept(m *jsapi.Msg, f eventFilter) []replicator.Event {
	evs, err := replicator.Decode(m.Subject, m.Seq, m.Time, m.Header, m.Data)
	if err != nil {
		evs = []replicator.Event{replicatorEvent(m)}
	}
	kept := evs[:0]
	for _, e := range evs {
		if f.keep(e) {
			kept = append(kept, e)
		}
	}
	return kept
}

// directHeaders are the headers a direct get adds to a stored message.
var directHeaders = []string{jetstream.StreamHeader, jetstream.SubjectHeader, jetstream.SequenceHeader,
	jetstream.TimeStampHeaer, "Nats-Num-Pending", "Nats-Last-Sequence", "Nats-UpTo-Sequence"}

// storedHeaders returns the headers the message was stored with.
func storedHeaders(h nats.Header) nats.Header {
	out := nats.Header{}
	for k, v := range h {
		out[k] = v
	}
	for _, k := range directHeaders {
		delete(out, k)
	}
	return out
}

// eventDetail is GET /events/{seq}.
type eventDetail struct {
	eventView
	StoredHeaders nats.Header `json:"stored_headers"`
	Encoding      string      `json:"encoding"`
	Body          string      `json:"body"`
	Truncated     bool        `json:"truncated"`
}

func (c *Console) event(ctx context.Context, r *http.Request, _ *session) (any, error) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		return nil, badRequest("sequence %q: want a positive integer", r.PathValue("seq"))
	}
	index, err := intParam(r, "index", 0, 0, 1<<20)
	if err != nil {
		return nil, err
	}
	m, err := jsapi.GetMsg(ctx, c.platform().Conn, streams.Events, jsapi.GetRequest{Seq: seq}, jsapi.Direct)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// A direct get may be answered by a replica that has not yet
		// stored an event just acknowledged (one the live tail shows):
		// the leader has it if anyone does.
		m, err = jsapi.GetMsg(ctx, c.platform().Conn, streams.Events, jsapi.GetRequest{Seq: seq}, jsapi.Leader)
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, notFound("no message %d in %s", seq, streams.Events)
	}
	if err != nil {
		return nil, err
	}
	evs, err := replicator.Decode(m.Subject, m.Seq, m.Time, m.Header, m.Data)
	if err != nil {
		evs = []replicator.Event{replicatorEvent(m)}
	}
	if int(index) >= len(evs) {
		return nil, notFound("message %d holds %d events, no index %d", seq, len(evs), index)
	}
	e := evs[index]
	d := eventDetail{eventView: newEventView(e), StoredHeaders: storedHeaders(m.Header)}
	data := e.Data
	if len(data) > maxBody {
		data, d.Truncated = data[:maxBody], true
	}
	d.Encoding, d.Body = render(data, d.Truncated)
	return d, nil
}

// render shows a body: JSON pretty-printed, UTF-8 text as is, anything
// else as a hex dump.
func render(data []byte, truncated bool) (encoding, body string) {
	if !truncated && json.Valid(data) {
		var b bytes.Buffer
		if json.Indent(&b, data, "", "  ") == nil {
			return "json", b.String()
		}
	}
	if isText(data, truncated) {
		return "text", string(trimRune(data))
	}
	return "hex", hex.Dump(data)
}

// replicatorEvent shows a raw stored message as one event.
func replicatorEvent(m *jsapi.Msg) replicator.Event {
	return replicator.Event{Subject: m.Subject, Data: m.Data, Header: storedHeaders(m.Header), Pos: replicator.Position{Seq: m.Seq, Count: 1}, Time: m.Time}
}
