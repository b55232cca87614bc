package service

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
)

// Request is one request to an endpoint. Exactly one of Respond or Fail
// takes effect; later calls are ignored. Either may be called from any
// goroutine, during the handler call or after it returned.
type Request struct {
	mr      micro.Request
	subject string
	conn    *nats.Conn
	// mu orders answers against the end of the handler call: while inline,
	// answers go through micro (which counts errors in its stats when the
	// handler returns); after it, straight to the reply subject, because
	// micro's request is not safe to use once its handler has returned.
	mu       sync.Mutex
	inline   bool
	svc      *Service
	endpoint string
	codec    Codec
	start    time.Time
	done     atomic.Bool
	latency  prometheus.Observer
	inFlight prometheus.Gauge
}

// Data returns the raw request body.
func (r *Request) Data() []byte { return r.mr.Data() }

// Header returns the request headers.
func (r *Request) Header() nats.Header { return nats.Header(r.mr.Headers()) }

// Subject returns the subject the request was sent to, without the
// instance prefix when it came on the instance's own subject.
func (r *Request) Subject() string { return r.subject }

// HasReply reports whether the sender waits for an answer.
func (r *Request) HasReply() bool { return r.mr.Reply() != "" }

// Reply returns the subject the answer goes to ("" for fire-and-forget).
// Its inbox prefix identifies the requesting connection.
func (r *Request) Reply() string { return r.mr.Reply() }

// Codec returns the codec the request was sent in; answers use the same.
func (r *Request) Codec() Codec { return r.codec }

// Decode decodes the body into v with the request's codec. Failures are
// bad_request *Errors ready to pass to Fail, counted in
// platform_service_bad_bodies_total.
func (r *Request) Decode(v any) error {
	err := r.codec.Decode(r.mr.Data(), v)
	if err != nil {
		r.svc.metrics.badBodies.WithLabelValues(r.svc.opts.Name, r.endpoint, codecLabel(r.codec)).Inc()
	}
	return err
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
	if !r.finish(false, "") {
		return
	}
	if !r.HasReply() {
		return
	}
	b, err := r.codec.Encode(v)
	if err != nil {
		r.svc.log.Error("encode response", "endpoint", r.endpoint, "err", err)
		e := Errorf(CodeInternal, "cannot encode response")
		b, _ = r.codec.Encode(e.Body())
		r.send(b, e)
		return
	}
	r.send(b, nil)
}

// Fail answers with the error body for err (an *Error keeps its code;
// anything else is an internal error) and the micro error headers.
func (r *Request) Fail(err error) {
	e := AsError(err)
	if !r.finish(true, e.Code) {
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
	failed := m.Header.Get(micro.ErrorCodeHeader) != ""
	if !r.finish(failed, "relayed") || !r.HasReply() {
		return
	}
	out := &nats.Msg{Subject: r.mr.Reply(), Header: m.Header, Data: m.Data}
	if err := r.conn.PublishMsg(out); err != nil {
		r.svc.log.Debug("relay", "endpoint", r.endpoint, "err", err)
	}
}

// leaveHandler marks the end of the handler call: answers from now on
// bypass micro.
func (r *Request) leaveHandler() {
	r.mu.Lock()
	r.inline = false
	r.mu.Unlock()
}

// send publishes the answer body, with the micro error headers when e is
// not nil.
func (r *Request) send(body []byte, e *Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	switch {
	case r.inline && e != nil:
		err = r.mr.Error(e.Status(), e.Message, body, r.contentType())
	case r.inline:
		err = r.mr.Respond(body, r.contentType())
	default:
		m := nats.NewMsg(r.mr.Reply())
		m.Data = body
		m.Header.Set(ContentTypeHeader, r.codec.String())
		if e != nil {
			m.Header.Set(micro.ErrorHeader, e.Message)
			m.Header.Set(micro.ErrorCodeHeader, e.Status())
		}
		err = r.conn.PublishMsg(m)
	}
	if err != nil {
		r.svc.log.Debug("respond", "endpoint", r.endpoint, "err", err)
	}
}

func (r *Request) contentType() micro.RespondOpt {
	return micro.WithHeaders(micro.Headers{ContentTypeHeader: []string{r.codec.String()}})
}

func (r *Request) finish(failed bool, code string) bool {
	if !r.done.CompareAndSwap(false, true) {
		return false
	}
	d := time.Since(r.start)
	r.latency.Observe(d.Seconds())
	r.inFlight.Dec()
	r.svc.load.inFlight.Add(-1)
	r.svc.load.observe(d, failed)
	if failed {
		r.svc.metrics.errors.WithLabelValues(r.svc.opts.Name, r.endpoint, code).Inc()
	}
	return true
}
