package httpapi

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Volatile parts of an error body: the tracking id and time stamps.
var (
	trackingRE  = regexp.MustCompile(`Tracking ID:[0-9a-f]{32}-G:0-TimeStamp:\d\d/\d\d/\d{4} \d\d:\d\d:\d\d`)
	timestampRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z`)
)

// render is a response as the golden files keep it: status, the headers
// the SDKs read, and the body with volatile parts replaced.
func render(rec *httptest.ResponseRecorder) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", rec.Code)
	var names []string
	for k := range rec.Header() {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(rec.Header()[k], ", "))
	}
	body := trackingRE.ReplaceAllString(rec.Body.String(), "Tracking ID:<id>")
	body = timestampRE.ReplaceAllString(body, "<timestamp>")
	fmt.Fprintf(&b, "\n%s\n", body)
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "errors", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./httpapi -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s:\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func testServer() *Server {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.handler = s.router()
	return s
}

// The hub's two error body forms, exactly, for each kind of error
// writeError meets: Format A ({"Message":"ErrorCode:…","ExceptionMessage":
// "Tracking ID:…"}) and, for direct-method errors, Format B (a JSON document
// in Message), with the lower-case iothub-errorcode header.
func TestWriteError_Golden(t *testing.T) {
	s := testServer()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"device-not-found", iothub.Errorf(iothub.DeviceNotFound, "Device %s not found.", "dev1")},
		{"precondition-failed", iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, ETag may be invalid.")},
		{"wrapped", fmt.Errorf("context: %w", iothub.Errorf(iothub.ArgumentInvalid, "The request body is not valid JSON."))},
		{"throttled", iothub.Errorf(iothub.ThrottlingException, "Too many requests.")},
		{"closed", iothub.ErrClosed},
		{"internal", errors.New("disk I/O error: /var/lib/secret")}, // never on the wire
		{"method-device-not-online", iothub.Errorf(iothub.DeviceNotOnline, "Timed out waiting for device to connect.")},
		{"method-timeout-with-info", &iothub.Error{Code: iothub.GatewayTimeout, Message: "Timed out waiting for the response from device.",
			Info: map[string]any{"timeout": "00:00:05"}}},
		{"method-bad-response", iothub.Errorf(iothub.InvalidResponseWhileProxying, "Payload is not a valid document of type application/json.")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.writeError(rec, httptest.NewRequest(http.MethodGet, "/devices/dev1?api-version=2021-04-12", nil), tc.err)
			checkGolden(t, tc.name, render(rec))
		})
	}
}

// Errors the router itself answers, before any handler runs.
func TestRouterErrors_Golden(t *testing.T) {
	s := testServer()
	for _, tc := range []struct{ name, method, target string }{
		{"unknown-path", http.MethodGet, "/nothing/here?api-version=2021-04-12"},
		{"method-not-allowed", http.MethodPatch, "/devices/dev1?api-version=2021-04-12"},
		{"no-api-version", http.MethodGet, "/devices/dev1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
			checkGolden(t, tc.name, render(rec))
		})
	}
}

// hasAPIVersion answers as r.URL.Query().Get("api-version") != "" for any
// query, escaped or not.
func TestHasAPIVersion(t *testing.T) {
	for _, q := range []string{
		"", "api-version=2021-04-12", "api-version=", "x=1&api-version=1", "api-version=&api-version=1",
		"api-version=1&api-version=", "api-versionx=1", "xapi-version=1", "api-version", "&&api-version=2&",
		"api%2Dversion=1", "api-version=%41", "api-version=%zz", "a=1;api-version=1", "api-version=1;x",
		"api+version=1", "api-version=+", "top=10&api-version=2020-03-13&other=%20",
	} {
		r := httptest.NewRequest(http.MethodGet, "/devices?"+q, nil)
		if got, want := hasAPIVersion(r), r.URL.Query().Get("api-version") != ""; got != want {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
}
