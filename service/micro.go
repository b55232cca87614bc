package service

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// instance is one service instance as the NATS micro protocol shows it:
// it answers PING, INFO and STATS on the $SRV subjects with nats.go
// micro's own types, so `nats micro ls/info/stats` and any micro client
// read it as a micro service.
//
// It speaks the protocol itself, rather than through micro.AddService,
// for the statistics: micro counts a request, its processing time and
// whether it failed when its handler call returns, and offers no way to
// record an answer given later from another goroutine, which is how every
// endpoint with concurrency (and ingest, txn, route.*) answers. Its STATS
// responder cannot be replaced either (a StatsHandler only fills the
// "data" field). Here each endpoint's figures are recorded when its answer
// is sent, wherever that happens.
type instance struct {
	nc          *nats.Conn
	identity    micro.ServiceIdentity
	description string
	started     time.Time

	mu        sync.Mutex
	endpoints []*endpoint
	verbs     []*nats.Subscription
	done      chan struct{} // closed by stop: ends the slow-consumer watchers
	stopOnce  sync.Once
}

// endpoint is one subscribed endpoint and its statistics.
type endpoint struct {
	info micro.EndpointInfo
	sub  *nats.Subscription

	mu         sync.Mutex
	requests   int
	errors     int
	lastError  string
	processing time.Duration
}

// record counts one answered request that took d; errText is "" for a
// success, else "<code>:<description>" as micro reports the last error.
func (e *endpoint) record(d time.Duration, errText string) {
	e.mu.Lock()
	e.requests++
	e.processing += d
	if errText != "" {
		e.errors++
		e.lastError = errText
	}
	e.mu.Unlock()
}

func (e *endpoint) stats() *micro.EndpointStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := &micro.EndpointStats{
		Name: e.info.Name, Subject: e.info.Subject, QueueGroup: e.info.QueueGroup,
		NumRequests: e.requests, NumErrors: e.errors, LastError: e.lastError,
		ProcessingTime: e.processing,
	}
	if e.requests > 0 {
		st.AverageProcessingTime = e.processing / time.Duration(e.requests)
	}
	return st
}

func newInstance(nc *nats.Conn, identity micro.ServiceIdentity, description string) *instance {
	identity.Metadata = maps.Clone(identity.Metadata)
	if identity.Metadata == nil {
		identity.Metadata = map[string]string{}
	}
	return &instance{nc: nc, identity: identity, description: description, started: time.Now().UTC(), done: make(chan struct{})}
}

// subscribe serves one endpoint with handler in the queue group queue,
// with the given pending limits (0: nats.go's defaults).
func (in *instance) subscribe(info micro.EndpointInfo, pendingMsgs, pendingBytes int, handler func(*endpoint, *nats.Msg)) error {
	e := &endpoint{info: info}
	sub, err := in.nc.QueueSubscribe(info.Subject, info.QueueGroup, func(m *nats.Msg) { handler(e, m) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", info.Subject, err)
	}
	if pendingMsgs != 0 || pendingBytes != 0 {
		if pendingMsgs == 0 {
			pendingMsgs = nats.DefaultSubPendingMsgsLimit
		}
		if pendingBytes == 0 {
			pendingBytes = nats.DefaultSubPendingBytesLimit
		}
		if err := sub.SetPendingLimits(pendingMsgs, pendingBytes); err != nil {
			_ = sub.Unsubscribe()
			return fmt.Errorf("pending limits of %s: %w", info.Subject, err)
		}
	}
	e.sub = sub
	// A slow consumer drops requests unanswered; micro counts each such
	// episode as an error of the endpoint, and so does this.
	slow := sub.StatusChanged(nats.SubscriptionSlowConsumer)
	go func() {
		for {
			select {
			case _, ok := <-slow:
				if !ok {
					return
				}
				e.mu.Lock()
				e.errors++
				e.lastError = nats.ErrSlowConsumer.Error()
				e.mu.Unlock()
			case <-in.done:
				return
			}
		}
	}()
	in.mu.Lock()
	in.endpoints = append(in.endpoints, e)
	in.mu.Unlock()
	return nil
}

// serveVerbs answers PING, INFO and STATS on $SRV.<verb>,
// $SRV.<verb>.<name> and $SRV.<verb>.<name>.<id>.
func (in *instance) serveVerbs() error {
	verbs := []struct {
		verb  micro.Verb
		value func() any
	}{
		{micro.PingVerb, func() any { return micro.Ping{ServiceIdentity: in.identity, Type: micro.PingResponseType} }},
		{micro.InfoVerb, func() any { return in.info() }},
		{micro.StatsVerb, func() any { return in.stats() }},
	}
	for _, v := range verbs {
		reply := func(m *nats.Msg) {
			b, err := json.Marshal(v.value())
			if err == nil {
				err = m.Respond(b)
			}
			_ = err // the asker times out; nothing else to tell
		}
		for _, scope := range [][2]string{{"", ""}, {in.identity.Name, ""}, {in.identity.Name, in.identity.ID}} {
			subject, err := micro.ControlSubject(v.verb, scope[0], scope[1])
			if err == nil {
				var sub *nats.Subscription
				if sub, err = in.nc.Subscribe(subject, reply); err == nil {
					in.mu.Lock()
					in.verbs = append(in.verbs, sub)
					in.mu.Unlock()
				}
			}
			if err != nil {
				return fmt.Errorf("serve %s: %w", v.verb, err)
			}
		}
	}
	return nil
}

func (in *instance) info() micro.Info {
	in.mu.Lock()
	defer in.mu.Unlock()
	eps := make([]micro.EndpointInfo, len(in.endpoints))
	for i, e := range in.endpoints {
		eps[i] = e.info
	}
	return micro.Info{ServiceIdentity: in.identity, Type: micro.InfoResponseType, Description: in.description, Endpoints: eps}
}

func (in *instance) stats() micro.Stats {
	in.mu.Lock()
	eps := make([]*micro.EndpointStats, len(in.endpoints))
	for i, e := range in.endpoints {
		eps[i] = e.stats()
	}
	in.mu.Unlock()
	return micro.Stats{ServiceIdentity: in.identity, Type: micro.StatsResponseType, Started: in.started, Endpoints: eps}
}

// stop drains the endpoint subscriptions, so requests already received
// are still handled, waits up to wait for the drains to finish, and ends
// the verb subscriptions. It may be called more than once.
func (in *instance) stop(wait time.Duration) {
	in.mu.Lock()
	eps, verbs := in.endpoints, in.verbs
	in.verbs = nil
	in.mu.Unlock()
	var drained []<-chan nats.SubStatus
	for _, e := range eps {
		if !e.sub.IsValid() {
			continue
		}
		ch := e.sub.StatusChanged(nats.SubscriptionClosed)
		if err := e.sub.Drain(); err == nil {
			drained = append(drained, ch)
		}
	}
	deadline := time.After(wait)
	for _, ch := range drained {
		select {
		case <-ch:
		case <-deadline:
		}
	}
	for _, sub := range verbs {
		_ = sub.Unsubscribe() // fails only on a closed connection, which ended it
	}
	in.stopOnce.Do(func() { close(in.done) })
}
