package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Stable error codes sent to requesters in {"error":{"code":...}}.
const (
	CodeBadRequest       = "bad_request"
	CodeTooLarge         = "too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeTimeout          = "timeout"
	CodeInternal         = "internal"
)

// httpStatus maps a code to its HTTP status: the one table for the micro
// Nats-Service-Error-Code header and for HTTP APIs.
var httpStatus = map[string]int{
	CodeBadRequest:       http.StatusBadRequest,
	CodeNotFound:         http.StatusNotFound,
	CodeConflict:         http.StatusConflict,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeInternal:         http.StatusInternalServerError,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeTimeout:          http.StatusGatewayTimeout,
}

// Error is the one error body every endpoint sends:
// {"error":{"code":"bad_request","message":"...", ...fields}}.
type Error struct {
	// Code is a stable, machine-readable code such as "bad_request".
	Code string
	// Message says what went wrong, for a human.
	Message string
	// Fields are extra details sent next to code and message (for a
	// conflict: key, expected, actual; for rate limiting: retry_after_ms).
	Fields map[string]any
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// With returns a copy of e with one more detail field.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Fields = make(map[string]any, len(e.Fields)+1)
	for k, v := range e.Fields {
		c.Fields[k] = v
	}
	c.Fields[key] = value
	return &c
}

// HTTPStatus returns the HTTP status of e's code, 500 for an unknown code.
func (e *Error) HTTPStatus() int {
	if s, ok := httpStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Status returns HTTPStatus as the text of the micro error header.
func (e *Error) Status() string { return strconv.Itoa(e.HTTPStatus()) }

// Body returns the error as the value to encode: {"error":{...}}.
func (e *Error) Body() map[string]any {
	inner := make(map[string]any, len(e.Fields)+2)
	for k, v := range e.Fields {
		inner[k] = v
	}
	inner["code"] = e.Code
	inner["message"] = e.Message
	return map[string]any{"error": inner}
}

// MarshalJSON encodes the error body.
func (e *Error) MarshalJSON() ([]byte, error) { return json.Marshal(e.Body()) }

// AsError returns err as an *Error: itself if it is one (or wraps one),
// otherwise an internal error carrying err's text.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// ParseError returns the *Error in a response body, or nil if the body is
// not an error body.
func ParseError(c Codec, data []byte) *Error {
	var m map[string]any
	var err error
	if c == Msgpack {
		err = decodeLoose(data, &m)
	} else {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		return nil
	}
	inner, ok := m["error"].(map[string]any)
	if !ok {
		return nil
	}
	e := &Error{Fields: map[string]any{}}
	for k, v := range inner {
		switch k {
		case "code":
			e.Code, _ = v.(string)
		case "message":
			e.Message, _ = v.(string)
		default:
			e.Fields[k] = v
		}
	}
	if e.Code == "" {
		return nil
	}
	return e
}
