package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
)

// call sends a JSON request to a platform service and decodes its
// answer into resp. No service answering is a 503; an error the service
// answers keeps its meaning (bad request 400, not found 404, else 502).
func call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	var body []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = b
	}
	msg, err := nc.RequestWithContext(ctx, subject, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return unavailable("no service answers %s: is it running?", subject)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if e := service.ParseError(service.JSON, msg.Data); e != nil {
		switch e.Code {
		case service.CodeBadRequest:
			return &apiError{http.StatusBadRequest, codeBadRequest, e.Message}
		case service.CodeNotFound:
			return &apiError{http.StatusNotFound, codeNotFound, e.Message}
		}
		return &apiError{http.StatusBadGateway, codeUpstream, subject + ": " + e.Message}
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("%s: decode answer: %w", subject, err)
	}
	return nil
}
