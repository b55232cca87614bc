// Package admin is the platform-admin micro service: admin.status answers
// with the cluster's nodes, meta leader, streams and service instances, the
// same view `platform status` prints.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// Options configure the admin service.
type Options struct {
	// Conn is the NATS connection to serve on. Required.
	Conn *nats.Conn
	// JS is a JetStream context on Conn. Required.
	JS jetstream.JetStream
	// Cluster is the embedded cluster, nil when running against an
	// external one.
	Cluster Cluster
	// HeartbeatInterval is the instance's heartbeat interval.
	HeartbeatInterval time.Duration
	// Logger is the service logger.
	Logger *slog.Logger
	// Registerer receives request metrics.
	Registerer prometheus.Registerer
}

func (o Options) validate() error {
	if o.Conn == nil || o.JS == nil {
		return errors.New("admin: connection and JetStream context are required")
	}
	return nil
}

// Cluster is what the status needs of an embedded cluster: its own view
// of its nodes, which still lists a node that is down. Declared here, with
// only these methods, so that the admin service does not link the NATS
// server that the cluster package embeds.
type Cluster interface {
	// Nodes returns every configured node; Gather fills in MetaLeader.
	Nodes() []Node
	// MetaLeader returns the name of the meta leader, "" without one.
	MetaLeader() string
	// Health returns what keeps the cluster from serving, nil when it is
	// healthy.
	Health() []error
}

// StatusRequest is the optional body of admin.status.
type StatusRequest struct {
	// Services, when false, skips the $SRV.PING round (faster).
	Services *bool `json:"services,omitempty"`
}

// decodeStatusRequest reads the body of admin.status, data, with decode
// (the request's Decode) and reports whether the status should ping the
// services: yes for an empty body and unless it says "services": false.
// Every refusal is a bad_request or too_large *service.Error.
func decodeStatusRequest(data []byte, decode func(any) error) (withServices bool, err error) {
	if len(data) == 0 {
		return true, nil
	}
	var req StatusRequest
	if err := decode(&req); err != nil {
		return false, err
	}
	return req.Services == nil || *req.Services, nil
}

// Service is the admin service.
type Service struct {
	*service.Service
}

// New returns the admin service.
func New(opts Options) (*Service, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	status := func(ctx context.Context, r *service.Request) (any, error) {
		withServices, err := decodeStatusRequest(r.Data(), r.Decode)
		if err != nil {
			return nil, err
		}
		st, err := Gather(ctx, opts.Conn, opts.JS, opts.Cluster, withServices)
		if err != nil {
			return nil, service.Errorf(service.CodeUnavailable, "gather status: %v", err)
		}
		return st, nil
	}
	svc, err := service.New(service.Options{
		Conn:        opts.Conn,
		Name:        "admin",
		Description: "Platform administration: cluster, stream and service status",
		Endpoints: []service.Endpoint{{
			Name:        "status",
			Subject:     streams.AdminStatusSubject,
			Description: "Nodes, meta leader, streams (leader, replicas, lag) and service instances as JSON",
			Handler:     service.Func(status),
			MaxBytes:    4 << 10,
			Concurrency: 4,
			Timeout:     5 * time.Second,
		}},
		HeartbeatInterval: opts.HeartbeatInterval,
		Logger:            opts.Logger,
		Registerer:        opts.Registerer,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Service: svc}, nil
}
