package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// ErrNoService is returned by Client when no alerting instance answers.
var ErrNoService = errors.New("no alerting service answers")

// Client sends the alerting service's NATS requests (what `platform alerts`
// and `platform silence` do). An error the service answers is a
// *service.Error with its code.
type Client struct {
	// Conn is the NATS connection to send on.
	Conn *nats.Conn
}

// Alerts returns the current alerts with their state; filter holds
// matchers as amtool writes them (severity="critical", instance=~"a.*").
// It asks page after page, so that any number of alerts comes through,
// halving a page the service finds too large for one message.
func (c Client) Alerts(ctx context.Context, filter []string) ([]AlertStatus, error) {
	out := []AlertStatus{}
	req := listRequest{Filter: filter, Limit: 1000}
	for {
		var page []AlertStatus
		err := c.request(ctx, streams.AlertsListSubject, req, &page)
		var se *service.Error
		if errors.As(err, &se) && se.Code == service.CodeTooLarge && req.Limit > 1 {
			req.Limit /= 2
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < req.Limit {
			return out, nil
		}
		req.After = page[len(page)-1].Fingerprint
	}
}

// AddSilence stores a silence and returns its id.
func (c Client) AddSilence(ctx context.Context, sl Silence) (string, error) {
	var out struct {
		ID string `json:"silenceID"`
	}
	err := c.request(ctx, streams.AlertsSilenceAddSubject, sl, &out)
	return out.ID, err
}

// Silences returns every silence with its state.
func (c Client) Silences(ctx context.Context) ([]GettableSilence, error) {
	var out []GettableSilence
	err := c.request(ctx, streams.AlertsSilenceListSubject, nil, &out)
	return out, err
}

// ExpireSilence ends the silence id now.
func (c Client) ExpireSilence(ctx context.Context, id string) error {
	return c.request(ctx, streams.AlertsSilenceExpireSubject, map[string]string{"id": id}, nil)
}

func (c Client) request(ctx context.Context, subject string, req, resp any) error {
	var body []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", subject, err)
		}
		body = b
	}
	msg, err := c.Conn.RequestWithContext(ctx, subject, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%s: %w", subject, ErrNoService)
	}
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if e := service.ParseError(service.JSON, msg.Data); e != nil {
		return fmt.Errorf("%s: %w", subject, e)
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("%s: decode answer: %w", subject, err)
	}
	return nil
}
