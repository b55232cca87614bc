package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/alerting"
	"github.com/platform/platform/streams"
)

// alertsView is GET /alerts.
type alertsView struct {
	Status   json.RawMessage            `json:"status"`
	Alerts   []alerting.AlertStatus     `json:"alerts"`
	Pending  []alerting.Alert           `json:"pending"`
	Groups   []alerting.Group           `json:"groups"`
	Silences []alerting.GettableSilence `json:"silences"`
}

func (c *Console) alerts(ctx context.Context, _ *http.Request, _ *session) (any, error) {
	nc := c.platform().Conn
	cl := alerting.Client{Conn: nc}
	var v alertsView
	var st struct {
		Engine json.RawMessage `json:"engine"`
	}
	if err := call(ctx, nc, streams.AlertsStatusSubject, nil, &st); err != nil {
		return nil, err
	}
	v.Status = st.Engine
	var err error
	if v.Alerts, err = cl.Alerts(ctx, nil); err != nil {
		return nil, clientErr(err)
	}
	if err := call(ctx, nc, streams.AlertsPendingSubject, nil, &v.Pending); err != nil {
		return nil, err
	}
	if err := call(ctx, nc, streams.AlertsGroupsSubject, nil, &v.Groups); err != nil {
		return nil, err
	}
	if v.Silences, err = cl.Silences(ctx); err != nil {
		return nil, clientErr(err)
	}
	if v.Pending == nil {
		v.Pending = []alerting.Alert{}
	}
	if v.Groups == nil {
		v.Groups = []alerting.Group{}
	}
	if v.Silences == nil {
		v.Silences = []alerting.GettableSilence{}
	}
	return v, nil
}

// clientErr gives an alerting.Client error its API meaning.
func clientErr(err error) error {
	if errors.Is(err, alerting.ErrNoService) {
		return unavailable("no alerting service answers: is it running?")
	}
	return err
}

// Bounds of a silence made in the console.
const (
	maxMatchers    = 4096
	maxComment     = 1024
	minSilence     = time.Minute
	maxSilence     = 365 * 24 * time.Hour
	maxSilenceBody = 16 << 10
)

// silenceRequest is the body of POST /silences.
type silenceRequest struct {
	Matchers   string     `json:"matchers"`
	DurationMS int64      `json:"duration_ms"`
	EndsAt     *time.Time `json:"ends_at"`
	Comment    string     `json:"comment"`
}

func (c *Console) addSilence(ctx context.Context, r *http.Request, s *session) (any, error) {
	var req silenceRequest
	if err := decodeBody(r, maxSilenceBody, &req); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	matchers, ends, err := req.check(now)
	if err != nil {
		return nil, err
	}
	by := s.user
	if by == "" {
		by = "console"
	}
	id, err := alerting.Client{Conn: c.platform().Conn}.AddSilence(ctx, alerting.Silence{
		Matchers: matchers, StartsAt: now, EndsAt: ends, CreatedBy: by, Comment: req.Comment,
	})
	if err != nil {
		return nil, serviceErr(err)
	}
	c.log.Info("silence created", "id", id, "by", by, "matchers", req.Matchers, "ends", ends)
	return map[string]string{"silenceID": id}, nil
}

// check checks a decoded silence request made at now and returns its
// matchers and end. Failures are bad requests.
func (req silenceRequest) check(now time.Time) ([]alerting.Matcher, time.Time, error) {
	if req.Matchers == "" || len(req.Matchers) > maxMatchers {
		return nil, time.Time{}, badRequest("matchers: want amtool's syntax, e.g. alertname=\"X\", severity=~\"crit.*\" (1 to %d bytes)", maxMatchers)
	}
	matchers, err := alerting.MatchersFromStrings([]string{req.Matchers})
	if err != nil {
		return nil, time.Time{}, badRequest("matchers: %v", err)
	}
	if len(matchers) == 0 {
		return nil, time.Time{}, badRequest("matchers: at least one")
	}
	if strings.TrimSpace(req.Comment) == "" || len(req.Comment) > maxComment {
		return nil, time.Time{}, badRequest("comment: required, at most %d bytes", maxComment)
	}
	var ends time.Time
	switch {
	case req.EndsAt != nil && req.DurationMS != 0:
		return nil, time.Time{}, badRequest("give duration_ms or ends_at, not both")
	case req.EndsAt != nil:
		ends = req.EndsAt.UTC()
	default:
		ends = now.Add(time.Duration(req.DurationMS) * time.Millisecond)
	}
	if d := ends.Sub(now); d < minSilence-time.Second || d > maxSilence {
		return nil, time.Time{}, badRequest("a silence lasts from %s to %s: duration_ms %d, ends_at %s", minSilence, maxSilence, req.DurationMS, ends.Format(time.RFC3339))
	}
	return matchers, ends, nil
}

func (c *Console) expireSilence(ctx context.Context, r *http.Request, s *session) (any, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > 128 {
		return nil, badRequest("silence id: 1 to 128 bytes")
	}
	if err := (alerting.Client{Conn: c.platform().Conn}).ExpireSilence(ctx, id); err != nil {
		return nil, serviceErr(err)
	}
	c.log.Info("silence expired", "id", id, "by", s.user)
	return map[string]string{"expired": id}, nil
}

// decodeBody reads a JSON body of at most limit bytes into v.
func decodeBody(r *http.Request, limit int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return badRequest("read body: %v", err)
	}
	if int64(len(b)) > limit {
		return badRequest("body over %d bytes", limit)
	}
	return decodeJSON(b, v)
}

// decodeJSON decodes a JSON body into v strictly, as the platform's
// services do: unknown fields and data after the document are bad
// requests.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body: unexpected data after the document")
	}
	return nil
}

// serviceErr gives an error a platform service answered its API meaning:
// its bad requests are the page's, a silence it does not know is 404.
func serviceErr(err error) error {
	var se *service.Error
	if errors.As(err, &se) {
		switch se.Code {
		case service.CodeBadRequest:
			return &apiError{http.StatusBadRequest, codeBadRequest, se.Message}
		case service.CodeNotFound:
			return &apiError{http.StatusNotFound, codeNotFound, se.Message}
		}
		return &apiError{http.StatusBadGateway, codeUpstream, se.Message}
	}
	return clientErr(err)
}
