package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

func TestTokenRequest_Sign(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	key := sasauth.DefaultServiceKey
	auth := &sasauth.Authenticator{Policies: sasauth.DefaultPolicies(""), Now: func() time.Time { return now }}
	for _, tc := range []struct {
		name string
		r    tokenRequest
		want string // connection string, or the resource a token must name
	}{
		{"policy token", tokenRequest{hostname: "hub.local", policy: "service", key: key, ttl: time.Hour}, "hub.local"},
		{"device token", tokenRequest{hostname: "hub.local", deviceID: "d1", key: key, ttl: time.Minute}, "hub.local/devices/d1"},
		{"module token", tokenRequest{hostname: "hub.local", deviceID: "d1", moduleID: "m1", key: key, ttl: time.Minute}, "hub.local/devices/d1/modules/m1"},
		{"policy connection string", tokenRequest{hostname: "hub.local", policy: "service", key: key, connectionString: true},
			"HostName=hub.local;SharedAccessKeyName=service;SharedAccessKey=" + key},
		{"module connection string", tokenRequest{hostname: "hub.local", deviceID: "d1", moduleID: "m1", key: key, connectionString: true},
			"HostName=hub.local;DeviceId=d1;ModuleId=m1;SharedAccessKey=" + key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.sign(now)
			if err != nil {
				t.Fatal(err)
			}
			if tc.r.connectionString {
				if got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
				return
			}
			tok, err := sasauth.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Resource() != tc.want || tok.Expiry != now.Add(tc.r.ttl).Unix() || !tok.VerifyKey(key) {
				t.Errorf("token %q: resource %q expiry %d", got, tok.Resource(), tok.Expiry)
			}
			if tc.r.deviceID == "" {
				if _, err := auth.Service(got, sasauth.ServiceConnect); err != nil {
					t.Errorf("the hub refuses it: %v", err)
				}
			} else if err := auth.Device(got, tc.r.deviceID, tc.r.moduleID, key, key); err != nil {
				t.Errorf("the hub refuses it: %v", err)
			}
		})
	}
	if _, err := (&tokenRequest{key: "not base64!", connectionString: true}).sign(now); err == nil {
		t.Error("a key that is not base64 was accepted")
	}
}

// runCLI runs the command line as main does and returns stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	if err != nil {
		t.Logf("stderr: %s", errOut.String())
	}
	return strings.TrimSpace(out.String()), err
}

func TestTokenCommand_AgainstRunningEmulator(t *testing.T) {
	h := hubtest.Start(t)
	dev := h.CreateDevice(t, "dev1")
	url := h.HTTPURL()

	// A device token signed with the key the command read from the registry
	// is accepted by the device HTTPS API.
	tok, err := runCLI(t, "token", "--url", url, "--device", "dev1", "--ttl", "5m")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", url+"/devices/dev1/messages/events?api-version=2021-04-12", strings.NewReader("hi"))
	req.Header.Set("Authorization", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("telemetry with the device token: %s", resp.Status)
	}

	cs, err := runCLI(t, "token", "--url", url, "--device", "dev1", "--connection-string")
	if err != nil || cs != dev.ConnectionString(h) {
		t.Errorf("connection string %q (%v), want %q", cs, err, dev.ConnectionString(h))
	}

	// The default policy token authorizes the service API.
	sas, err := runCLI(t, "token")
	if err != nil {
		t.Fatal(err)
	}
	r := h.Do(t, "GET", "/devices/dev1", nil, "Authorization: "+sas)
	if r.StatusCode != http.StatusOK {
		t.Errorf("GET /devices/dev1 with the iothubowner token: %d %s", r.StatusCode, r.Body)
	}

	for _, bad := range [][]string{
		{"token", "--url", url, "--device", "nobody"},
		{"token", "--module", "m1"},
		{"token", "--policy", "nope"},
		{"token", "--policy", "service", "--device", "dev1"},
		{"token", "--ttl", "-1m"},
	} {
		if out, err := runCLI(t, bad...); err == nil {
			t.Errorf("%v succeeded: %q", bad, out)
		}
	}
}

func TestHealthcheckAndHelp(t *testing.T) {
	h := hubtest.Start(t)
	if _, err := runCLI(t, "healthcheck", "--url", h.HTTPURL()); err != nil {
		t.Errorf("healthcheck --url http: %v", err)
	}
	if _, err := runCLI(t, "healthcheck", "--url", h.HTTPSURL(), "--ca", h.CACertFile()); err != nil {
		t.Errorf("healthcheck --url https --ca: %v", err)
	}
	if _, err := runCLI(t, "healthcheck", "--url", h.HTTPSURL()); err == nil {
		t.Error("healthcheck trusted the emulator's certificate without --ca")
	}
	if _, err := runCLI(t, "healthcheck", "--url", "http://127.0.0.1:1"); err == nil {
		t.Error("healthcheck of nothing succeeded")
	}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"jobs", "--help"}, []string{"jobs list | show JOB_ID | watch JOB_ID", "-url"}},
		{[]string{"messages", "--help"}, []string{"messages tail", "-module"}},
		{[]string{"token", "--help"}, []string{"--connection-string", "-ttl"}},
		{[]string{"healthcheck", "--help"}, []string{"-url", "-ca"}},
	} {
		out, err := runCLI(t, tc.args...)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v does not mention %q:\n%s", tc.args, w, out)
			}
		}
	}
	var usage bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &usage); err == nil {
		t.Error("--help did not stop the emulator from starting")
	}
	for _, w := range []string{"messages tail [--device ID] [--module ID]", "token ", "healthcheck [--url URL]", "jobs list"} {
		if !strings.Contains(usage.String(), w) {
			t.Errorf("--help does not list %q", w)
		}
	}
	if _, err := runCLI(t, "jobs"); err == nil {
		t.Error("jobs without a command succeeded")
	}
}

func TestExportCA(t *testing.T) {
	h := hubtest.Start(t)
	dst := t.TempDir() + "/certs/ca.pem"
	if err := exportCA(h.CACertFile(), dst); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "healthcheck", "--url", h.HTTPSURL(), "--ca", dst); err != nil {
		t.Errorf("the exported CA does not verify the emulator: %v", err)
	}
}
