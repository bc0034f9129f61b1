package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// The hub remembers verified SAS tokens (issue 22); reusing one token
// across requests must never outlive what it was verified against: the
// device's status and keys, and the token's expiry on the hub's clock.
func TestSASCache_NoStaleAcceptance(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(time.Time{}))
	d := h.CreateDevice(t, "dev1")
	tok := d.Token(t, h, time.Hour)
	send := func() int {
		t.Helper()
		return h.Do(t, http.MethodPost, "/devices/dev1/messages/events", `{"t":1}`, "Authorization: "+tok).StatusCode
	}
	for range 2 {
		if s := send(); s != http.StatusNoContent {
			t.Fatalf("send with a valid token: %d", s)
		}
	}
	c := mustDial(t, h, d, connOpts{password: tok})
	c.publish(t, "devices/dev1/messages/events/", 1, `{"t":2}`)

	put := func(status, key string) {
		t.Helper()
		r := h.Do(t, http.MethodPut, "/devices/dev1", map[string]any{"deviceId": "dev1", "status": status,
			"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": key, "secondaryKey": key}}},
			`If-Match: "*"`)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("update: %d %s", r.StatusCode, r.Body)
		}
	}
	put("disabled", d.PrimaryKey)
	c.waitLost(t)
	if s := send(); s != http.StatusUnauthorized {
		t.Errorf("disabled device's cached token: %d, want 401", s)
	}
	if _, err := dial(t, h, d, connOpts{password: tok}); err == nil {
		t.Error("disabled device connected with its cached token")
	}

	put("enabled", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	if s := send(); s != http.StatusUnauthorized {
		t.Errorf("token signed with a replaced key: %d, want 401", s)
	}
	if _, err := dial(t, h, d, connOpts{password: tok}); err == nil {
		t.Error("connected with a token signed by a replaced key")
	}

	put("enabled", d.PrimaryKey)
	if s := send(); s != http.StatusNoContent {
		t.Fatalf("key restored: %d", s)
	}
	owner := "Authorization: " + h.ServiceToken(t, "")
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil, owner); r.StatusCode != http.StatusOK {
		t.Fatalf("service token: %d", r.StatusCode)
	}
	h.Advance(t, time.Hour)
	if s := send(); s != http.StatusUnauthorized {
		t.Errorf("device token past its se on the hub clock: %d, want 401", s)
	}
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil, owner), 401, "IotHubUnauthorizedAccess")
}
