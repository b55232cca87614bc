// Package servicetest holds test helpers for the platform's micro
// services' errors.
package servicetest

import (
	"errors"
	"testing"

	"github.com/platform/platform/service"
)

// RequireCode fails t unless err is a *service.Error with one of codes.
func RequireCode(t testing.TB, what string, err error, codes ...string) {
	t.Helper()
	var se *service.Error
	if !errors.As(err, &se) {
		t.Fatalf("%s: %v (%T), want a *service.Error", what, err, err)
	}
	for _, c := range codes {
		if se.Code == c {
			return
		}
	}
	t.Fatalf("%s: code %s (%v), want one of %v", what, se.Code, err, codes)
}
