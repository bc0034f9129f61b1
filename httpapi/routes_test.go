package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// Every route appears once, and every route but the open ones refuses a
// caller without a SAS token (after the api-version check, for the hub's).
func TestRoutes_UniqueAndAuthenticated(t *testing.T) {
	s := testServer()
	s.Auth = &sasauth.Authenticator{Policies: sasauth.DefaultPolicies("")}
	s.handler = s.router()
	open := map[string]bool{"/$iothub/websocket": true, "/_emulator/health": true, "/_emulator/ca.pem": true}
	seen := map[string]bool{}
	for _, rt := range s.routes() {
		key := rt.method + " " + rt.path
		if seen[key] {
			t.Errorf("%s is in the table twice", key)
		}
		seen[key] = true
		if open[rt.path] {
			continue
		}
		// {id}, {mid} and {lockToken} stand for real values; the device API
		// looks the device up first, which needs no registry for this check
		// to fail earlier: skip those, they are covered end to end.
		if strings.HasPrefix(rt.path, "/devices/{id}/messages") || strings.HasPrefix(rt.path, "/devices/{id}/modules/{mid}/messages") {
			continue
		}
		target := strings.NewReplacer("{id}", "dev1", "{mid}", "m1", "{lockToken}", "tok").Replace(rt.path) + "?api-version=2021-04-12"
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(rt.method, target, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", key, rec.Code)
		}
	}
}
