package balancer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// gather sends one request on subject and collects every answer until
// quiet passes without one, or wait in all, or ctx ends. Micro's $SRV
// subjects are answered by every instance, so one request finds them all.
func gather(ctx context.Context, nc *nats.Conn, subject string, wait, quiet time.Duration) ([][]byte, error) {
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("gather %s: %w", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, fmt.Errorf("gather %s: %w", subject, err)
	}
	all := time.NewTimer(wait)
	defer all.Stop()
	idle := time.NewTimer(wait)
	defer idle.Stop()
	var out [][]byte
	for {
		select {
		case m := <-ch:
			out = append(out, m.Data)
			idle.Reset(quiet)
		case <-idle.C:
			return out, nil
		case <-all.C:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// endpointOf is one endpoint found by discovery.
type endpointOf struct {
	service, instance string
	// filter is the endpoint's own subject, maybe a wildcard.
	filter string
	// instanced: the endpoint is a platform instance's own copy of
	// filter, inst.<service>.<instance>.<filter>, where one instance
	// alone answers. Otherwise it is served on filter by the service's
	// queue group.
	instanced bool
}

// discover asks every micro service for its info and returns its
// endpoints: the instance-addressed copies platform services add, and
// every endpoint served on its own subject, by any micro service.
func discover(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]endpointOf, error) {
	subject, err := micro.ControlSubject(micro.InfoVerb, "", "")
	if err != nil {
		return nil, err
	}
	answers, err := gather(ctx, nc, subject, wait, wait/4)
	if err != nil {
		return nil, err
	}
	var out []endpointOf
	for _, b := range answers {
		var info micro.Info
		if json.Unmarshal(b, &info) != nil || !streams.ValidMemberToken(info.Name) || !streams.ValidMemberToken(info.ID) {
			continue
		}
		for _, e := range info.Endpoints {
			if e.Subject == "" {
				continue
			}
			filter := e.Metadata[service.MetadataInstanceOf]
			if filter == "" {
				out = append(out, endpointOf{service: info.Name, instance: info.ID, filter: e.Subject})
				continue
			}
			svc, inst, sub, err := streams.ParseInstanceSubject(e.Subject)
			if err != nil || svc != info.Name || inst != info.ID || sub != filter {
				continue
			}
			out = append(out, endpointOf{service: svc, instance: inst, filter: filter, instanced: true})
		}
	}
	return out, nil
}

// instanceStats is one instance's $SRV.STATS summed over its endpoints.
type instanceStats struct {
	service, instance string
	requests, errors  int64
	processing        time.Duration
}

// pollStats asks every micro service for its stats.
func pollStats(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]instanceStats, error) {
	subject, err := micro.ControlSubject(micro.StatsVerb, "", "")
	if err != nil {
		return nil, err
	}
	answers, err := gather(ctx, nc, subject, wait, wait/4)
	if err != nil {
		return nil, err
	}
	out := make([]instanceStats, 0, len(answers))
	for _, b := range answers {
		var st micro.Stats
		if json.Unmarshal(b, &st) != nil || !streams.ValidMemberToken(st.Name) || !streams.ValidMemberToken(st.ID) {
			continue
		}
		is := instanceStats{service: st.Name, instance: st.ID}
		for _, e := range st.Endpoints {
			if e == nil {
				continue
			}
			is.requests += int64(e.NumRequests)
			is.errors += int64(e.NumErrors)
			is.processing += e.ProcessingTime
		}
		out = append(out, is)
	}
	return out, nil
}
