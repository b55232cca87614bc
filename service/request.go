package service

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
)

// Request is one request to an endpoint. Exactly one of Respond, Fail or
// Relay takes effect; later calls are ignored. Any of them may be called
// from any goroutine, during the handler call or after it returned: the
// request is counted, in the micro statistics and the metrics, when it is
// answered.
type Request struct {
	msg      *nats.Msg
	subject  string
	svc      *Service
	ep       *endpoint
	endpoint string
	codec    Codec
	start    time.Time
	done     atomic.Bool
	latency  prometheus.Observer
	inFlight prometheus.Gauge
}

// Data returns the raw request body.
func (r *Request) Data() []byte { return r.msg.Data }

// Header returns the request headers.
func (r *Request) Header() nats.Header { return r.msg.Header }

// Subject returns the subject the request was sent to, without the
// instance prefix when it came on the instance's own subject.
func (r *Request) Subject() string { return r.subject }

// HasReply reports whether the sender waits for an answer.
func (r *Request) HasReply() bool { return r.msg.Reply != "" }

// Reply returns the subject the answer goes to ("" for fire-and-forget).
// Its inbox prefix identifies the requesting connection.
func (r *Request) Reply() string { return r.msg.Reply }

// Codec returns the codec the request was sent in; answers use the same.
func (r *Request) Codec() Codec { return r.codec }

// Decode decodes the body into v with the request's codec. Failures are
// bad_request *Errors ready to pass to Fail, counted in
// platform_service_bad_bodies_total.
func (r *Request) Decode(v any) error {
	err := r.codec.Decode(r.msg.Data, v)
	if err != nil {
		r.svc.metrics.badBodies.WithLabelValues(r.svc.opts.Name, r.endpoint, codecLabel(r.codec)).Inc()
	}
	return err
}

// DecodeDocument is Decode for a body that must be a document: a null
// body (JSON null, msgpack nil) is refused as bad_request too, and counted
// as a bad body like any other.
func (r *Request) DecodeDocument(v any) error {
	if err := r.Decode(v); err != nil {
		return err
	}
	if b := bytes.TrimSpace(r.msg.Data); string(b) == "null" || (len(b) == 1 && b[0] == 0xc0) {
		r.svc.metrics.badBodies.WithLabelValues(r.svc.opts.Name, r.endpoint, codecLabel(r.codec)).Inc()
		return Errorf(CodeBadRequest, "null body: send a %s document", r.codec)
	}
	return nil
}

// codecLabel names a codec in metric labels.
func codecLabel(c Codec) string {
	if c == Msgpack {
		return "msgpack"
	}
	return "json"
}

// Respond answers with v encoded in the request's codec.
func (r *Request) Respond(v any) {
	if r.done.Load() {
		return
	}
	b, err := r.codec.Encode(v)
	if err != nil {
		r.svc.log.Error("encode response", "endpoint", r.endpoint, "err", err)
		r.Fail(Errorf(CodeInternal, "cannot encode response"))
		return
	}
	if !r.finish("", "") || !r.HasReply() {
		return
	}
	r.send(b, nil)
}

// Fail answers with the error body for err (an *Error keeps its code;
// anything else is an internal error) and the micro error headers.
func (r *Request) Fail(err error) {
	e := AsError(err)
	if !r.finish(e.Code, e.Status()+":"+e.Message) {
		return
	}
	if e.Code == CodeInternal {
		r.svc.log.Error("request failed", "endpoint", r.endpoint, "err", err)
	} else {
		r.svc.log.Debug("request refused", "endpoint", r.endpoint, "code", e.Code, "err", e.Message)
	}
	if !r.HasReply() {
		return
	}
	b, encErr := r.codec.Encode(e.Body())
	if encErr != nil {
		b, _ = JSON.Encode(e.Body())
	}
	r.send(b, e)
}

// Relay answers with m's headers and body exactly as they are, for
// handlers that forward a request and pass its answer on. An answer
// carrying the micro error header counts as failed, under the code
// "relayed".
func (r *Request) Relay(m *nats.Msg) {
	code, errText := "", ""
	if status := m.Header.Get(micro.ErrorCodeHeader); status != "" {
		code, errText = "relayed", status+":"+m.Header.Get(micro.ErrorHeader)
	}
	if !r.finish(code, errText) || !r.HasReply() {
		return
	}
	out := &nats.Msg{Subject: r.msg.Reply, Header: m.Header, Data: m.Data}
	if err := r.svc.opts.Conn.PublishMsg(out); err != nil {
		r.svc.log.Debug("relay", "endpoint", r.endpoint, "err", err)
	}
}

// send publishes the answer body, with the micro error headers when e is
// not nil.
func (r *Request) send(body []byte, e *Error) {
	m := &nats.Msg{Subject: r.msg.Reply, Data: body, Header: nats.Header{}}
	m.Header.Set(ContentTypeHeader, r.codec.String())
	if e != nil {
		m.Header.Set(micro.ErrorHeader, e.Message)
		m.Header.Set(micro.ErrorCodeHeader, e.Status())
	}
	if err := r.svc.opts.Conn.PublishMsg(m); err != nil {
		r.svc.log.Debug("respond", "endpoint", r.endpoint, "err", err)
	}
}

// finish counts the request as answered, failed under code when code is
// not empty (errText is then micro's "<status>:<description>"), and
// reports whether this is its first answer.
func (r *Request) finish(code, errText string) bool {
	if !r.done.CompareAndSwap(false, true) {
		return false
	}
	d := time.Since(r.start)
	r.ep.record(d, errText)
	r.latency.Observe(d.Seconds())
	r.inFlight.Dec()
	r.svc.load.inFlight.Add(-1)
	r.svc.load.observe(d, code != "")
	if code != "" {
		r.svc.metrics.errors.WithLabelValues(r.svc.opts.Name, r.endpoint, code).Inc()
	}
	return true
}
