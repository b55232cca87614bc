package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/platform/platform/internal/version"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// maxPostBytes bounds a posted body, HTTP or NATS.
const maxPostBytes = 4 << 20

// PostAlerts checks posted alerts and hands them to every instance.
func (s *Service) PostAlerts(alerts []PostableAlert) error {
	if err := checkAlerts(alerts); err != nil {
		s.m.bad.WithLabelValues("alert").Inc()
		return service.Errorf(service.CodeBadRequest, "%v", err)
	}
	b, err := json.Marshal(alerts)
	if err != nil {
		return fmt.Errorf("encode alerts: %w", err)
	}
	if err := s.opts.Conn.Publish(streams.AlertsFanoutSubject, b); err != nil {
		return service.Errorf(service.CodeUnavailable, "hand alerts on: %v", err)
	}
	s.m.posted.Add(float64(len(alerts)))
	return nil
}

// checkAlerts validates alerts as Alertmanager validates a post; the
// error names the first bad one. Both alerts.post and alerts.fanout run
// it: the fanout subject is reachable by other clients than the service.
func checkAlerts(alerts []PostableAlert) error {
	for i, a := range alerts {
		if err := a.check(); err != nil {
			return fmt.Errorf("alert %d: %w", i, err)
		}
	}
	return nil
}

// AddSilence stores a silence in KV SILENCES and returns its id: a new one
// unless s.ID names an existing silence, which is then replaced.
func (s *Service) AddSilence(ctx context.Context, sl Silence) (string, error) {
	now := time.Now()
	if sl.StartsAt.IsZero() || sl.StartsAt.Before(now) {
		sl.StartsAt = now
	}
	if sl.ID == "" {
		sl.ID = nuid.Next()
	} else if _, ok := s.silences.Get(sl.ID); !ok {
		return "", service.Errorf(service.CodeNotFound, "silence %s not found", sl.ID)
	}
	sl.UpdatedAt = now
	if _, err := sl.compile(); err != nil {
		return "", service.Errorf(service.CodeBadRequest, "silence: %v", err)
	}
	b, err := json.Marshal(sl)
	if err != nil {
		return "", err
	}
	if _, err := s.silKV.Put(ctx, sl.ID, b); err != nil {
		return "", service.Errorf(service.CodeUnavailable, "store silence: %v", err)
	}
	_ = s.silences.Set(sl) // seen at once here; the others follow the bucket
	return sl.ID, nil
}

// ExpireSilence ends a silence now.
func (s *Service) ExpireSilence(ctx context.Context, id string) error {
	sl, ok := s.silences.Get(id)
	if !ok {
		return service.Errorf(service.CodeNotFound, "silence %s not found", id)
	}
	now := time.Now()
	if sl.State(now) == SilenceExpired {
		return service.Errorf(service.CodeBadRequest, "silence %s already expired", id)
	}
	sl.EndsAt, sl.UpdatedAt = now, now
	if sl.StartsAt.After(now) {
		sl.StartsAt = now.Add(-time.Nanosecond)
	}
	b, _ := json.Marshal(sl)
	if _, err := s.silKV.Put(ctx, id, b); err != nil {
		return service.Errorf(service.CodeUnavailable, "store silence: %v", err)
	}
	s.silences.Delete(id)
	_ = s.silences.Set(sl)
	return nil
}

// GettableSilence is a silence with its status, as API v2 lists it.
type GettableSilence struct {
	Silence
	Status struct {
		State string `json:"state"`
	} `json:"status"`
}

func (s *Service) listSilences(now time.Time, filter labels.Matchers) []GettableSilence {
	out := []GettableSilence{}
	for _, sl := range s.silences.List() {
		if !silenceMatches(sl, filter) {
			continue
		}
		g := GettableSilence{Silence: sl}
		g.Status.State = sl.State(now)
		out = append(out, g)
	}
	return out
}

// silenceMatches keeps a silence with a matcher equal to each filter, as
// amtool's query does for equality matchers.
func silenceMatches(sl Silence, filter labels.Matchers) bool {
	for _, f := range filter {
		found := false
		for _, m := range sl.Matchers {
			if m.Name == f.Name && f.Matches(m.Value) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *Service) endpoints() []service.Endpoint {
	return []service.Endpoint{
		{Name: "post", Subject: streams.AlertsPostSubject, MaxBytes: maxPostBytes, Concurrency: 4,
			Description: `Post alerts, Alertmanager's JSON: [{"labels":{"alertname":"X"},"annotations":{},"startsAt":"..","endsAt":".."}]`,
			Handler: service.Func(func(_ context.Context, r *service.Request) (any, error) {
				var as []PostableAlert
				if err := r.Decode(&as); err != nil {
					return nil, err
				}
				if err := s.PostAlerts(as); err != nil {
					return nil, err
				}
				return map[string]int{"accepted": len(as)}, nil
			})},
		{Name: "list", Subject: streams.AlertsListSubject, Concurrency: 4,
			Description: `Current alerts with their state; {"filter":["severity=\"critical\""]} optional`,
			Handler: service.Func(func(_ context.Context, r *service.Request) (any, error) {
				var req struct {
					Filter []string `json:"filter"`
				}
				if len(r.Data()) > 0 {
					if err := r.Decode(&req); err != nil {
						return nil, err
					}
				}
				f, err := parseMatchers(req.Filter)
				if err != nil {
					return nil, service.Errorf(service.CodeBadRequest, "filter: %v", err)
				}
				return s.filterAlerts(time.Now(), f, true, true, true), nil
			})},
		{Name: "status", Subject: streams.AlertsStatusSubject, Concurrency: 1,
			Description: "Rules, firing and pending alerts, groups, silences, and whether this instance is active",
			Handler:     service.Func(func(context.Context, *service.Request) (any, error) { return s.status(), nil })},
		{Name: "reload", Subject: streams.AlertsReloadSubject, Concurrency: 1,
			Description: "Reload the rules file; a bad file is refused with the line of the bad rule, and the rules in force stay",
			Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				if err := s.Reload(); err != nil {
					return nil, service.Errorf(service.CodeBadRequest, "%v", err)
				}
				return map[string]int{"rules": len(s.engine.Config().Rules)}, nil
			})},
		{Name: "silence-add", Subject: streams.AlertsSilenceAddSubject, Concurrency: 4,
			Description: `Add a silence: {"matchers":[{"name":"alertname","value":"X","isRegex":false}],"endsAt":"..","createdBy":"..","comment":".."}`,
			Handler: service.Func(func(ctx context.Context, r *service.Request) (any, error) {
				var sl Silence
				if err := r.Decode(&sl); err != nil {
					return nil, err
				}
				id, err := s.AddSilence(ctx, sl)
				if err != nil {
					return nil, err
				}
				return map[string]string{"silenceID": id}, nil
			})},
		{Name: "silence-list", Subject: streams.AlertsSilenceListSubject, Concurrency: 4,
			Description: "Every silence with its state",
			Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				return s.listSilences(time.Now(), nil), nil
			})},
		{Name: "silence-expire", Subject: streams.AlertsSilenceExpireSubject, Concurrency: 4,
			Description: `Expire a silence: {"id":".."}`,
			Handler: service.Func(func(ctx context.Context, r *service.Request) (any, error) {
				var req struct {
					ID string `json:"id"`
				}
				if err := r.Decode(&req); err != nil {
					return nil, err
				}
				if err := s.ExpireSilence(ctx, req.ID); err != nil {
					return nil, err
				}
				return map[string]string{"expired": req.ID}, nil
			})},
	}
}

func (s *Service) status() map[string]any {
	return map[string]any{"active": s.Active(), "id": s.svc.ID(), "engine": s.engine.Status(time.Now()),
		"rules_file": s.opts.RulesFile}
}

func (s *Service) filterAlerts(now time.Time, f labels.Matchers, active, silenced, inhibited bool) []AlertStatus {
	out := []AlertStatus{}
	for _, a := range s.engine.Alerts(now) {
		if !matchAll(f, a.Labels) {
			continue
		}
		if (!silenced && len(a.SilencedBy) > 0) || (!inhibited && len(a.InhibitedBy) > 0) ||
			(!active && a.State == "active") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// API returns the HTTP handler of Alertmanager's API v2 subset.
func (s *Service) API() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/alerts", func(w http.ResponseWriter, r *http.Request) {
		var as []PostableAlert
		if err := decodeBody(r, &as); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.PostAlerts(as); err != nil {
			httpFail(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /api/v2/alerts", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f, err := parseMatchers(q["filter"])
		if err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, s.filterAlerts(time.Now(), f, boolParam(q.Get("active")), boolParam(q.Get("silenced")), boolParam(q.Get("inhibited"))))
	})
	mux.HandleFunc("GET /api/v2/alerts/groups", func(w http.ResponseWriter, r *http.Request) {
		type group struct {
			Labels   map[string]string `json:"labels"`
			Receiver struct {
				Name string `json:"name"`
			} `json:"receiver"`
			Alerts []AlertStatus `json:"alerts"`
		}
		route := s.engine.Config().Route
		byKey := map[string]*group{}
		var order []string
		for _, a := range s.engine.Alerts(time.Now()) {
			for _, rt := range route.match(a.Labels) {
				gl := groupLabels(rt, a.Labels)
				k := rt.Receiver + groupKey(rt, gl)
				g := byKey[k]
				if g == nil {
					g = &group{Labels: gl}
					g.Receiver.Name = rt.Receiver
					byKey[k] = g
					order = append(order, k)
				}
				g.Alerts = append(g.Alerts, a)
			}
		}
		out := make([]*group, 0, len(order))
		for _, k := range order {
			out = append(out, byKey[k])
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /api/v2/silences", func(w http.ResponseWriter, r *http.Request) {
		f, err := parseMatchers(r.URL.Query()["filter"])
		if err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, s.listSilences(time.Now(), f))
	})
	mux.HandleFunc("POST /api/v2/silences", func(w http.ResponseWriter, r *http.Request) {
		var sl Silence
		if err := decodeBody(r, &sl); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		id, err := s.AddSilence(r.Context(), sl)
		if err != nil {
			httpFail(w, err)
			return
		}
		writeJSON(w, map[string]string{"silenceID": id})
	})
	mux.HandleFunc("GET /api/v2/silence/{id}", func(w http.ResponseWriter, r *http.Request) {
		sl, ok := s.silences.Get(r.PathValue("id"))
		if !ok {
			httpError(w, http.StatusNotFound, errors.New("silence not found"))
			return
		}
		g := GettableSilence{Silence: sl}
		g.Status.State = sl.State(time.Now())
		writeJSON(w, g)
	})
	mux.HandleFunc("DELETE /api/v2/silence/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ExpireSilence(r.Context(), r.PathValue("id")); err != nil {
			httpFail(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /api/v2/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"cluster":     map[string]any{"status": "ready", "name": s.svc.ID(), "peers": []any{}},
			"versionInfo": map[string]string{"version": version.String(), "branch": "", "buildDate": "", "buildUser": "", "goVersion": "", "revision": ""},
			"config":      map[string]string{"original": ""},
			"uptime":      s.start.UTC(),
			"platform":    s.status(),
		})
	})
	mux.HandleFunc("GET /api/v2/receivers", func(w http.ResponseWriter, _ *http.Request) {
		var out []map[string]string
		for _, rc := range s.engine.Config().Receivers {
			out = append(out, map[string]string{"name": rc.Name})
		}
		writeJSON(w, out)
	})
	return mux
}

func boolParam(v string) bool { return v != "false" }

func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxPostBytes+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(b) > maxPostBytes {
		return fmt.Errorf("body over %d bytes", maxPostBytes)
	}
	if err := service.JSON.DecodeLenient(b, v); err != nil {
		return fmt.Errorf("decode body: %s", service.AsError(err).Message)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// httpError answers as Alertmanager does: a JSON string with the message.
func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(strings.TrimSpace(err.Error()))
}

func httpFail(w http.ResponseWriter, err error) {
	e := service.AsError(err)
	code := http.StatusInternalServerError
	switch e.Code {
	case service.CodeBadRequest:
		code = http.StatusBadRequest
	case service.CodeNotFound:
		code = http.StatusNotFound
	case service.CodeUnavailable:
		code = http.StatusServiceUnavailable
	}
	httpError(w, code, errors.New(e.Message))
}
