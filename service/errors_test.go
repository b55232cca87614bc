package service

import (
	"net/http"
	"strconv"
	"testing"
)

func TestErrorHTTPStatus(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{CodeBadRequest, http.StatusBadRequest},
		{CodeTooLarge, http.StatusRequestEntityTooLarge},
		{CodeUnsupportedMedia, http.StatusUnsupportedMediaType},
		{CodeNotFound, http.StatusNotFound},
		{CodeConflict, http.StatusConflict},
		{CodeRateLimited, http.StatusTooManyRequests},
		{CodeUnavailable, http.StatusServiceUnavailable},
		{CodeTimeout, http.StatusGatewayTimeout},
		{CodeInternal, http.StatusInternalServerError},
		{"no_such_code", http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e := Errorf(tt.code, "x")
			if got := e.HTTPStatus(); got != tt.want {
				t.Errorf("HTTPStatus() = %d, want %d", got, tt.want)
			}
			if got, want := e.Status(), strconv.Itoa(tt.want); got != want {
				t.Errorf("Status() = %q, want %q", got, want)
			}
		})
	}
}
