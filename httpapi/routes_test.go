package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Every route appears once, and every route but the open ones refuses a
// caller without a SAS token (after the api-version check, for the hub's).
func TestRoutes_UniqueAndAuthenticated(t *testing.T) {
	s := testServer()
	s.Auth = &sasauth.Authenticator{Policies: sasauth.DefaultPolicies("")}
	reg, err := registry.NewService(registry.Deps{Store: noIdentities{}, Sessions: noSessions{}, Twins: noTwins{}}, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Registry = reg // the device API looks the device up: none exists
	// DPS: the service API has its own policy; the device API attests each
	// request (the literal "{idScope}" is an unknown scope).
	s.ProvisioningAuth = &sasauth.Authenticator{}
	if s.Provisioning, err = provisioning.NewService(provisioning.Deps{Store: noEnrollments{}, Registry: reg, Twins: noTwinReplace{}}, provisioning.Config{}); err != nil {
		t.Fatal(err)
	}
	s.handler = s.router()
	// /_emulator/dps tells the ID scope and the well-known DPS connection
	// string, as the banner does.
	open := map[string]bool{"/$iothub/websocket": true, "/_emulator/health": true, "/_emulator/ca.pem": true, "/_emulator/dps": true}
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
		target := strings.NewReplacer("{id}", "dev1", "{mid}", "m1", "{lockToken}", "tok").Replace(rt.path) + "?api-version=2021-04-12"
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(rt.method, target, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", key, rec.Code)
		}
	}
}

// noIdentities is a registry store that holds nobody.
type noIdentities struct{ registry.Store }

func (noIdentities) Get(_ context.Context, deviceID, moduleID string) (*registry.Identity, error) {
	return nil, registry.NotFound(deviceID, moduleID)
}

// noEnrollments is a provisioning store that holds nothing.
type noEnrollments struct{ provisioning.Store }

// noTwinReplace is a twin writer that is never reached.
type noTwinReplace struct{}

func (noTwinReplace) ReplaceService(context.Context, twins.Key, string, map[string]any, map[string]any) (*twins.Twin, error) {
	return nil, errors.New("not reached")
}

type noSessions struct{}

func (noSessions) CloseSession(string, string, bool) {}

type noTwins struct{}

func (noTwins) MergeTwin(context.Context, string, string, string, map[string]any, map[string]any) error {
	return nil
}

// The per-segment routers pick, for any method and path, what one router
// of the whole table picks: the same route, or the same 404 / 405.
func TestBySegment_SameAsOneRouter(t *testing.T) {
	table := testServer().routes()
	newRouter := func() *mux.Router {
		r := mux.NewRouter().UseEncodedPath()
		r.SkipClean(true)
		r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) })
		r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(405) })
		return r
	}
	wrap := func(rt route) http.Handler {
		name := rt.method + " " + rt.path
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(name + " " + fmt.Sprint(mux.Vars(r))))
		})
	}
	one := newRouter()
	for _, rt := range table {
		m := one.Handle(rt.path, wrap(rt))
		if rt.method != anyMethod {
			m.Methods(rt.method)
		}
	}
	split := bySegment(table, newRouter, wrap)

	// Every pattern with its variables filled in with ids and with the
	// words other patterns use, plus paths no pattern knows.
	words := []string{"dev1", "twins", "devices", "registrations", "jobs", "_emulator", "%24iothub", "a%2Fb"}
	paths := []string{"/", "/nope", "/nope/registrations/r1/register", "/twins", "/devices/", "/_emulator", "/%24iothub/websocket", "//twins/dev1"}
	varRE := regexp.MustCompile(`\{[^}]+\}`)
	for _, rt := range table {
		for _, w := range words {
			paths = append(paths, varRE.ReplaceAllString(rt.path, w), varRE.ReplaceAllString(rt.path, w)+"/extra")
		}
	}
	methods := []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodHead}
	for _, p := range paths {
		for _, m := range methods {
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			one.ServeHTTP(want, httptest.NewRequest(m, p+"?api-version=1", nil))
			split.ServeHTTP(got, httptest.NewRequest(m, p+"?api-version=1", nil))
			if got.Code != want.Code || got.Body.String() != want.Body.String() {
				t.Errorf("%s %s: %d %q, one router: %d %q", m, p, got.Code, got.Body, want.Code, want.Body)
			}
		}
	}
}
