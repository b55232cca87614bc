package console

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"time"
)

func notYet(context.Context, *http.Request, *session) (any, error) {
	return nil, unavailable("not implemented yet")
}

type series struct{}

const seriesPoints = 900

func newSeries(int) *series                             { return &series{} }
func (s *series) sample(prometheus.Gatherer, time.Time) {}
func (c *Console) seriesAPI(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) events(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) event(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) tail(w http.ResponseWriter, r *http.Request) {
	fail(w, 503, codeUnavailable, "not yet")
}

type memberView struct{}

func (c *Console) followMembers(context.Context, jetstream.JetStream) {}
func (c *Console) membersAPI(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) member(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) balancerAPI(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) alerts(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) addSilence(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) expireSilence(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
func (c *Console) state(ctx context.Context, r *http.Request, s *session) (any, error) {
	return notYet(ctx, r, s)
}
