package e2e

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// refusedWith reports whether err is paho's error for a CONNACK code.
func refusedWith(err error, code byte) bool {
	return err != nil && errors.Is(err, packets.ConnErrors[code])
}

func connectionState(t *testing.T, h *hubtest.Hub, path string) string {
	t.Helper()
	s, _ := decodeMap(t, h.Do(t, http.MethodGet, path, nil))["connectionState"].(string)
	return s
}

// Client id "A/" must not authenticate as device A beside A's connection
// (issue #13): it is refused, and A stays connected and answered.
func TestIdentity_TrailingSlashClientIDRefused(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "A")
	a := mustDial(t, h, d, connOpts{})
	a.subscribe(t, "$iothub/twin/res/#")
	for _, id := range []string{"A/", "A//"} {
		_, err := dial(t, h, d, connOpts{clientID: id, username: h.Hostname() + "/" + id + "/?api-version=2021-04-12"})
		if !refusedWith(err, 5) {
			t.Errorf("client id %q: %v, want CONNACK 5", id, err)
		}
	}
	if s := connectionState(t, h, "/devices/A"); s != "Connected" {
		t.Errorf("A is %s", s)
	}
	a.publish(t, "$iothub/twin/GET/?$rid=1", 0, "")
	a.waitFor(t, "$iothub/twin/res/200/?$rid=1")
}

// Disabling a device closes its modules' connections and refuses new ones.
func TestIdentity_DisabledDeviceTakesItsModules(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	m := decodeMap(t, h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1"}))
	mod := &hubtest.Device{ID: "dev1", ModuleID: "m1", PrimaryKey: m["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)}
	c := mustDial(t, h, mod, connOpts{})

	dev := decodeMap(t, h.Do(t, http.MethodGet, "/devices/dev1", nil))
	dev["status"] = "disabled"
	if r := h.Do(t, http.MethodPut, "/devices/dev1", dev, `If-Match: "*"`); r.StatusCode != http.StatusOK {
		t.Fatalf("disable: %d %s", r.StatusCode, r.Body)
	}
	c.waitLost(t)
	if _, err := dial(t, h, mod, connOpts{}); !refusedWith(err, 5) {
		t.Errorf("module of a disabled device: %v, want CONNACK 5", err)
	}
}

// A token that never expires in practice (se = 2^63-1) keeps its
// connection; it once overflowed the expiry timer and closed it at once.
func TestIdentity_FarFutureTokenExpiry(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	tok, err := sasauth.Sign(h.Hostname()+"/devices/dev1", d.PrimaryKey, "", time.Unix(math.MaxInt64, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(tok, "&se=9223372036854775807") {
		t.Fatalf("token %s", tok)
	}
	c := mustDial(t, h, d, connOpts{password: tok})
	c.subscribe(t, "$iothub/twin/res/#")
	c.publish(t, "$iothub/twin/GET/?$rid=7", 0, "")
	c.waitFor(t, "$iothub/twin/res/200/?$rid=7")
	if s := connectionState(t, h, "/devices/dev1"); s != "Connected" {
		t.Errorf("dev1 is %s", s)
	}
}

// Device ids are case-sensitive, so is the id in a token's resource.
func TestIdentity_TokenResourceIsCaseSensitive(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	for _, res := range []string{"/devices/DEV1", "/DEVICES/Dev1"} {
		tok, err := sasauth.Sign(h.Hostname()+res, d.PrimaryKey, "", time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dial(t, h, d, connOpts{password: tok}); !refusedWith(err, 5) {
			t.Errorf("token for %s opened dev1: %v", res, err)
		}
	}
	tok, _ := sasauth.Sign(h.Hostname()+"/DEVICES/dev1", d.PrimaryKey, "", time.Now().Add(time.Hour))
	mustDial(t, h, d, connOpts{password: tok})
}

// Every id the hub allows works on every transport: '+', '#' and '%' were
// accepted by the registry but broke the token check, the topic
// permissions or the C2D subscription (issue #13).
func TestIdentity_SpecialCharacterIDsWork(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	for _, id := range []string{"a+b", "a#b", "a%b", "a%2Bb", "x-._*?!(),=@$'"} {
		t.Run(id, func(t *testing.T) {
			d := h.CreateDevice(t, id)
			for _, o := range []connOpts{{}, {ws: true}} {
				c := mustDial(t, h, d, o)
				c.subscribe(t, "devices/"+id+"/messages/devicebound/#", "$iothub/twin/res/#", "$iothub/methods/POST/#")
				c.publish(t, "devices/"+id+"/messages/events/k=v", 1, "hello")
				c.publish(t, "$iothub/twin/GET/?$rid=1", 0, "")
				c.waitFor(t, "$iothub/twin/res/200/?$rid=1")
				sendC2D(t, h, url.PathEscape(id), map[string]any{"body": "to " + id})
				m := c.waitFor(t, "devices/"+id+"/messages/devicebound/")
				if string(m.Payload()) != "to "+id {
					t.Errorf("C2D %q on %s", m.Payload(), m.Topic())
				}
				c.Disconnect(0)
			}
			r := deviceDo(t, h, d, http.MethodPost, "/devices/"+url.PathEscape(id)+"/messages/events", "over https")
			if r.StatusCode != http.StatusNoContent {
				t.Errorf("HTTPS telemetry: %d %s", r.StatusCode, r.Body)
			}
			got := waitMessages(t, h, "deviceId="+url.QueryEscape(id), 3)
			for _, m := range got {
				if m.DeviceID != id {
					t.Errorf("message from %q", m.DeviceID)
				}
			}
		})
	}
}
