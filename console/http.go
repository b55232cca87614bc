package console

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// Error codes of the API's error body (API.md).
const (
	codeBadRequest  = "bad_request"
	codeAuth        = "unauthorized"
	codeForbidden   = "forbidden"
	codeNotFound    = "not_found"
	codeMethod      = "method_not_allowed"
	codeTooMany     = "too_many"
	codeUpstream    = "upstream"
	codeUnavailable = "unavailable"
)

// apiError is an error answer: the HTTP status and the body's code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, codeBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &apiError{http.StatusNotFound, codeNotFound, fmt.Sprintf(format, args...)}
}

func unavailable(format string, args ...any) error {
	return &apiError{http.StatusServiceUnavailable, codeUnavailable, fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// failErr answers err: an apiError as it says, anything else as a 502
// (a platform service or JetStream failed us).
func failErr(w http.ResponseWriter, err error) {
	if e, ok := err.(*apiError); ok {
		fail(w, e.status, e.code, e.msg)
		return
	}
	fail(w, http.StatusBadGateway, codeUpstream, err.Error())
}

// loopback reports whether the request comes from this host.
func loopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// intParam reads an integer query parameter within [lo, hi], def when
// absent.
func intParam(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s %q: want an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// uintParam reads an unsigned integer query parameter (a stream
// sequence), ok false when absent.
func uintParam(r *http.Request, name string) (n uint64, ok bool, err error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, badRequest("%s %q: want a stream sequence (an unsigned integer)", name, v)
	}
	return n, true, nil
}

// strParam reads a string query parameter of at most max bytes.
func strParam(r *http.Request, name string, max int) (string, error) {
	v := r.URL.Query().Get(name)
	if len(v) > max {
		return "", badRequest("%s: %d bytes, at most %d", name, len(v), max)
	}
	return v, nil
}
