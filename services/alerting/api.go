package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
	// Listed here at once; the other instances hear of them below.
	s.engine.Post(time.Now(), alerts...)
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
	if sl.Comment == "" {
		// Alertmanager requires a comment, not an author.
		return "", service.Errorf(service.CodeBadRequest, "silence: a comment is required")
	}
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
		return nil // as Alertmanager: expiring an expired silence is done already
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

// silenceMatches keeps a silence that has, for each filter, a matcher
// of the same name, operator and value, as Alertmanager's silence query
// does: service="web" does not list a silence on service!="web".
func silenceMatches(sl Silence, filter labels.Matchers) bool {
	for _, f := range filter {
		if !slices.ContainsFunc(sl.Matchers, func(m Matcher) bool {
			return m.Name == f.Name && m.Value == f.Value && m.matchType() == f.Type
		}) {
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
			Description: `Current alerts with their state, by fingerprint; {"filter":["severity=\"critical\""],"limit":500,"after":"<fingerprint>"} optional`,
			Handler: service.Func(func(_ context.Context, r *service.Request) (any, error) {
				var req listRequest
				if len(r.Data()) > 0 {
					if err := r.Decode(&req); err != nil {
						return nil, err
					}
				}
				return s.list(r.Codec(), req)
			})},
		{Name: "status", Subject: streams.AlertsStatusSubject, Concurrency: 1,
			Description: "Rules, firing and pending alerts, groups, silences, and whether this instance is active",
			Handler:     service.Func(func(context.Context, *service.Request) (any, error) { return s.status(), nil })},
		{Name: "groups", Subject: streams.AlertsGroupsSubject, Concurrency: 4,
			Description: "Aggregation groups with their firing alerts, as Alertmanager's GET /api/v2/alerts/groups",
			Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				return s.engine.Groups(time.Now(), AllAlerts), nil
			})},
		{Name: "pending", Subject: streams.AlertsPendingSubject, Concurrency: 4,
			Description: "Rule alerts waiting for their for: duration",
			Handler: service.Func(func(context.Context, *service.Request) (any, error) {
				p := s.engine.Pending()
				if p == nil {
					p = []Alert{}
				}
				return p, nil
			})},
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

// listRequest is alerts.list's body: a filter and, to page through many
// alerts, at most Limit alerts (0: all) of fingerprint above After.
type listRequest struct {
	Filter []string `json:"filter"`
	Limit  int      `json:"limit,omitempty"`
	After  string   `json:"after,omitempty"`
}

// listHeadroom is what an alerts.list answer keeps free of the server's
// max payload for its headers.
const listHeadroom = 1024

// list answers alerts.list: the alerts req asks for, or too_large, with
// how to page, when they are more than one message carries; an answer
// the server would drop must not leave the requester waiting.
func (s *Service) list(codec service.Codec, req listRequest) (any, error) {
	f := AllAlerts
	var err error
	if f.Matchers, err = parseFilter(req.Filter); err != nil {
		return nil, service.Errorf(service.CodeBadRequest, "filter: %v", err)
	}
	if req.Limit < 0 {
		return nil, service.Errorf(service.CodeBadRequest, "limit must be 0 (all) or more, got %d", req.Limit)
	}
	as := s.engine.Alerts(time.Now(), f)
	if req.After != "" {
		i, _ := slices.BinarySearchFunc(as, req.After, func(a AlertStatus, fp string) int { return strings.Compare(a.Fingerprint, fp) })
		for i < len(as) && as[i].Fingerprint <= req.After {
			i++
		}
		as = as[i:]
	}
	if req.Limit > 0 && len(as) > req.Limit {
		as = as[:req.Limit]
	}
	b, err := codec.Encode(as)
	if err != nil {
		return nil, fmt.Errorf("encode alerts: %w", err)
	}
	if limit := s.opts.Conn.MaxPayload() - listHeadroom; int64(len(b)) > limit {
		s.log.Warn("alerts.list answer over one message; refused", "alerts", len(as), "bytes", len(b), "max", limit)
		return nil, service.Errorf(service.CodeTooLarge,
			"%d alerts take %d bytes, over the %d one message carries: page with \"limit\" and \"after\" (the last fingerprint), or filter",
			len(as), len(b), limit)
	}
	return as, nil
}

func (s *Service) status() map[string]any {
	return map[string]any{"active": s.Active(), "id": s.svc.ID(), "engine": s.engine.Status(time.Now()),
		"rules_file": s.opts.RulesFile}
}

// parseFilter parses API filter parameters, one matcher each, as
// Alertmanager does: "{" or "a=" is refused, not ignored.
func parseFilter(ss []string) (labels.Matchers, error) {
	var out labels.Matchers
	for _, s := range ss {
		m, err := labels.ParseMatcher(s)
		if err != nil {
			return nil, fmt.Errorf("bad matcher %q: %w", s, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// alertFilter reads API v2's filter, active, silenced, inhibited and
// receiver parameters; the three states default to true.
func alertFilter(q url.Values) (AlertFilter, error) {
	f := AlertFilter{Active: boolParam(q.Get("active")), Silenced: boolParam(q.Get("silenced")),
		Inhibited: boolParam(q.Get("inhibited"))}
	var err error
	if f.Matchers, err = parseFilter(q["filter"]); err != nil {
		return f, err
	}
	if r := q.Get("receiver"); r != "" {
		if f.Receiver, err = regexp.Compile("^(?:" + r + ")$"); err != nil {
			return f, fmt.Errorf("bad receiver regexp %q: %w", r, err)
		}
	}
	return f, nil
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
		f, err := alertFilter(r.URL.Query())
		if err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, s.engine.Alerts(time.Now(), f))
	})
	mux.HandleFunc("GET /api/v2/alerts/groups", func(w http.ResponseWriter, r *http.Request) {
		f, err := alertFilter(r.URL.Query())
		if err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, s.engine.Groups(time.Now(), f))
	})
	mux.HandleFunc("GET /api/v2/silences", func(w http.ResponseWriter, r *http.Request) {
		f, err := parseFilter(r.URL.Query()["filter"])
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
		b, err := s.engine.Config().AlertmanagerConfig()
		if err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
		original := string(b)
		writeJSON(w, map[string]any{
			"cluster":     map[string]any{"status": "ready", "name": s.svc.ID(), "peers": []any{}},
			"versionInfo": map[string]string{"version": version.String(), "branch": "", "buildDate": "", "buildUser": "", "goVersion": "", "revision": ""},
			"config":      map[string]string{"original": original},
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
	httpError(w, e.HTTPStatus(), errors.New(e.Message))
}
