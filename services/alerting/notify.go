package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/streams"
)

// WebhookMessage is Alertmanager's webhook payload, version 4: what
// webhooks receive and what stream ALERTS holds.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Message builds the webhook payload of n at now.
func Message(n Notification, externalURL string, now time.Time) WebhookMessage {
	m := WebhookMessage{Version: "4", GroupKey: n.GroupKey, Status: n.Status, Receiver: n.Receiver,
		GroupLabels: n.GroupLabels, ExternalURL: externalURL, Alerts: make([]WebhookAlert, 0, len(n.Alerts))}
	for i, a := range n.Alerts {
		st := "firing"
		if a.Resolved(now) {
			st = "resolved"
		}
		m.Alerts = append(m.Alerts, WebhookAlert{Status: st, Labels: a.Labels, Annotations: nonNil(a.Annotations),
			StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint().String()})
		if i == 0 {
			m.CommonLabels, m.CommonAnnotations = maps.Clone(a.Labels), maps.Clone(nonNil(a.Annotations))
			continue
		}
		common(m.CommonLabels, a.Labels)
		common(m.CommonAnnotations, a.Annotations)
	}
	m.GroupLabels = nonNil(m.GroupLabels)
	m.CommonLabels = nonNil(m.CommonLabels)
	m.CommonAnnotations = nonNil(m.CommonAnnotations)
	return m
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func common(acc, m map[string]string) {
	for k, v := range acc {
		if m[k] != v {
			delete(acc, k)
		}
	}
}

// Notifier delivers notifications to the receivers of the config.
type Notifier struct {
	// JS publishes to stream ALERTS.
	JS jetstream.JetStream
	// Client sends webhooks and forwards to Alertmanagers.
	Client *http.Client
	// ExternalURL is reported in payloads.
	ExternalURL string
}

// streamHeadroom is what a stream notification keeps free of the
// server's max payload for its headers.
const streamHeadroom = 1024

// Send delivers n to receiver rc: one message on stream ALERTS (subject
// alerts.<severity>.<alertname> of the group's first alert, message id
// msgID so a retry is stored once) and one POST per webhook. As
// Alertmanager's max_alerts does, a group over rc.MaxAlerts is sent with
// its first alerts and the rest counted in truncatedAlerts; the stream's
// message keeps, further, only the first alerts that fit one NATS message.
// It returns the most alerts any destination left out.
func (nf *Notifier) Send(ctx context.Context, rc *Receiver, n Notification, msgID string, now time.Time) (truncated int, err error) {
	kept := n.Alerts
	if rc.MaxAlerts > 0 && len(kept) > rc.MaxAlerts {
		kept = kept[:rc.MaxAlerts]
	}
	body, err := nf.encode(n, len(kept), now)
	if err != nil {
		return 0, err
	}
	truncated = len(n.Alerts) - len(kept)
	var errs []error
	if rc.Stream && len(n.Alerts) > 0 {
		sbody, left, err := nf.fit(n, len(kept), body, nf.JS.Conn().MaxPayload()-streamHeadroom, now)
		truncated = max(truncated, left)
		if err != nil {
			errs = append(errs, err)
		} else {
			a := n.Alerts[0]
			m := nats.NewMsg(streams.AlertSubject(Severity(a.Labels), a.Name()))
			m.Data = sbody
			m.Header.Set(jetstream.MsgIDHeader, msgID)
			m.Header.Set("Content-Type", "application/json")
			if _, err := nf.JS.PublishMsg(ctx, m); err != nil {
				errs = append(errs, fmt.Errorf("publish %s: %w", m.Subject, err))
			}
		}
	}
	for _, u := range rc.Webhooks {
		if err := nf.post(ctx, u, body); err != nil {
			errs = append(errs, err)
		}
	}
	return truncated, errors.Join(errs...)
}

// encode returns the payload of n with its first k alerts, counting the
// others as truncated.
func (nf *Notifier) encode(n Notification, k int, now time.Time) ([]byte, error) {
	total := len(n.Alerts)
	n.Alerts = n.Alerts[:k]
	msg := Message(n, nf.ExternalURL, now)
	msg.TruncatedAlerts = total - k
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode notification: %w", err)
	}
	return b, nil
}

// fit returns body, the payload of n's first k alerts, when it is at most
// limit bytes, else the payload of the most first alerts that is, and how
// many alerts it leaves out.
func (nf *Notifier) fit(n Notification, k int, body []byte, limit int64, now time.Time) ([]byte, int, error) {
	if int64(len(body)) <= limit {
		return body, len(n.Alerts) - k, nil
	}
	// The largest j whose payload fits: lo always fits (or is 0), hi never.
	var best []byte
	lo, hi := 0, k
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		b, err := nf.encode(n, mid, now)
		if err != nil {
			return nil, 0, err
		}
		if int64(len(b)) <= limit {
			lo, best = mid, b
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return nil, len(n.Alerts), fmt.Errorf("notification of group %s: its first alert alone is over the %d bytes one message carries", n.GroupKey, limit)
	}
	return best, len(n.Alerts) - lo, nil
}

// Severity returns the severity an alert is published under on stream
// ALERTS: its severity label when it is one of streams.AlertSeverities,
// else warning. Rules can only have those; alerts posted by others (a
// Prometheus rule with severity "page", or none) keep their labels in
// the payload and are published as warnings.
func Severity(lbls map[string]string) string {
	if s := lbls["severity"]; streams.ValidAlertSeverity(s) {
		return s
	}
	return streams.SeverityWarning
}

func (nf *Notifier) post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := nf.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Forward posts alerts to an Alertmanager's POST /api/v2/alerts, as
// Prometheus does: firing alerts with an end a few evaluations ahead, so
// they resolve by themselves if this process dies, resolved ones with
// their end.
func (nf *Notifier) Forward(ctx context.Context, baseURL string, alerts []Alert, endsIn time.Duration, now time.Time) error {
	out := make([]PostableAlert, len(alerts))
	for i, a := range alerts {
		ends := a.EndsAt
		if ends.IsZero() {
			ends = now.Add(endsIn)
		}
		out[i] = PostableAlert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: ends, GeneratorURL: a.GeneratorURL}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode alerts: %w", err)
	}
	return nf.post(ctx, baseURL+"/api/v2/alerts", body)
}

// KVLog is the notification log in a KV bucket: one entry per receiver
// and group, taken by compare-and-set, so that of several instances
// flushing the same group only one notifies.
type KVLog struct {
	KV jetstream.KeyValue
}

// Claim reads key's entry and, if needs says the previous entry (nil: none)
// calls for a notification, writes next in its place by compare-and-set.
// It reports whether this caller won the claim and must notify; losing to
// another writer is not an error.
func (l KVLog) Claim(ctx context.Context, key string, needs func(prev *LogEntry) bool, next LogEntry) (bool, error) {
	var prev *LogEntry
	var rev uint64
	e, err := l.KV.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return false, fmt.Errorf("read notification log %s: %w", key, err)
	default:
		rev = e.Revision()
		var p LogEntry
		if json.Unmarshal(e.Value(), &p) == nil {
			prev = &p
		}
	}
	if !needs(prev) {
		return false, nil
	}
	b, err := json.Marshal(next)
	if err != nil {
		return false, fmt.Errorf("encode notification log entry: %w", err)
	}
	if rev == 0 {
		_, err = l.KV.Create(ctx, key, b)
	} else {
		_, err = l.KV.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		jsapi.HasCode(err, jsapi.CodeWrongLastSequence) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("write notification log %s: %w", key, err)
	}
	return true, nil
}

// msgID names one notification for JetStream's duplicate window.
func msgID(key string, at time.Time) string {
	return key + "." + strconv.FormatInt(at.UnixNano(), 36)
}
