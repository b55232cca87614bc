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
	"sync"
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
		// A firing alert has no end yet, whatever end its sender
		// expects: Alertmanager sends the zero time.
		st, ends := "firing", time.Time{}
		if a.Resolved(now) {
			st, ends = "resolved", a.EndsAt
		}
		m.Alerts = append(m.Alerts, WebhookAlert{Status: st, Labels: a.Labels, Annotations: nonNil(a.Annotations),
			StartsAt: a.StartsAt, EndsAt: ends, GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint().String()})
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
	// Retry, when set, retries each destination that fails for a reason
	// a retry can mend, until Send's context ends (nil: one attempt).
	Retry *jsapi.Retry
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
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	// Each destination is tried, and retried, on its own, as
	// Alertmanager's integrations are: one failing webhook does not
	// hold the others back.
	try := func(send func(ctx context.Context) error) {
		wg.Go(func() {
			err := send(ctx)
			if err != nil && nf.Retry != nil && !isPermanent(err) {
				r := *nf.Retry
				r.Retryable = func(err error) bool { return !isPermanent(err) }
				err = r.Do(ctx, send)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	if rc.Stream && len(n.Alerts) > 0 {
		sbody, left, err := nf.fit(n, len(kept), body, nf.JS.Conn().MaxPayload()-streamHeadroom, now)
		truncated = max(truncated, left)
		if err != nil {
			errs = append(errs, err)
		} else {
			a := n.Alerts[0]
			subject := streams.AlertSubject(Severity(a.Labels), a.Name())
			try(func(ctx context.Context) error {
				m := nats.NewMsg(subject)
				m.Data = sbody
				m.Header.Set(jetstream.MsgIDHeader, msgID)
				m.Header.Set("Content-Type", "application/json")
				if _, err := nf.JS.PublishMsg(ctx, m); err != nil {
					return fmt.Errorf("publish %s: %w", m.Subject, err)
				}
				return nil
			})
		}
	}
	for _, u := range rc.Webhooks {
		try(func(ctx context.Context) error { return nf.post(ctx, u, body) })
	}
	wg.Wait()
	return truncated, errors.Join(errs...)
}

// permanentError is a failure a retry cannot mend: the receiver refused
// the request (4xx other than 429), as Alertmanager's retrier decides.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
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
		err := fmt.Errorf("post %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests {
			return permanentError{err}
		}
		return err
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
// and group, written once a notification is delivered, as Alertmanager's
// nflog is, so that a failed notification is sent again at the next
// flush rather than at repeat_interval.
type KVLog struct {
	KV jetstream.KeyValue
}

// Read returns key's entry (nil: none, or unreadable) and its revision (0:
// none).
func (l KVLog) Read(ctx context.Context, key string) (*LogEntry, uint64, error) {
	e, err := l.KV.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, fmt.Errorf("read notification log %s: %w", key, err)
	}
	var p LogEntry
	if json.Unmarshal(e.Value(), &p) != nil {
		return nil, e.Revision(), nil
	}
	return &p, e.Revision(), nil
}

// Record writes next as key's entry in place of revision rev (0: none) by
// compare-and-set. It reports false, with no error, when another writer
// moved the entry first.
func (l KVLog) Record(ctx context.Context, key string, next LogEntry, rev uint64) (bool, error) {
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

// msgID names one notification for JetStream's duplicate window: the
// log entry it follows, so that a retry, or another instance sending the
// same update, is stored once.
func msgID(key string, rev uint64) string {
	return key + "." + strconv.FormatUint(rev, 36)
}
