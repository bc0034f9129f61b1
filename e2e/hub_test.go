package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// errorBody is the hub's REST error shape (digest §7.1, Format A).
type errorBody struct {
	Message          string
	ExceptionMessage string
}

func checkHubError(t *testing.T, r *hubtest.Response, status int, code string) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := r.Header.Get("iothub-errorcode"); got != code {
		t.Errorf("iothub-errorcode = %q, want %q", got, code)
	}
	var e errorBody
	r.JSON(t, &e)
	if !strings.HasPrefix(e.Message, "ErrorCode:"+code+";") {
		t.Errorf("Message = %q, want it to start with ErrorCode:%s;", e.Message, code)
	}
	if !strings.HasPrefix(e.ExceptionMessage, "Tracking ID:") {
		t.Errorf("ExceptionMessage = %q, want a tracking id", e.ExceptionMessage)
	}
}

func TestMQTT_TLSConnectWithDeviceToken(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{tls: true})
	if !c.IsConnectionOpen() {
		t.Fatal("not connected")
	}
	r := h.Do(t, http.MethodGet, "/devices/dev1", nil)
	var dev struct{ ConnectionState string }
	r.JSON(t, &dev)
	if dev.ConnectionState != "Connected" {
		t.Errorf("connectionState = %q, want Connected", dev.ConnectionState)
	}
	c.Disconnect(100)
	checkFor(t, 5*time.Second, func() error {
		r := h.Do(t, http.MethodGet, "/devices/dev1", nil)
		r.JSON(t, &dev)
		if dev.ConnectionState != "Disconnected" {
			return errString("still " + dev.ConnectionState)
		}
		return nil
	})
}

type errString string

func (e errString) Error() string { return string(e) }

func TestMQTT_RefusesBadCredentials(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	other := h.CreateDevice(t, "dev2")
	wrongKey, _ := sasauth.Sign(h.Hostname()+"/devices/dev1", other.PrimaryKey, "", time.Now().Add(time.Hour))
	expired, _ := sasauth.Sign(h.Hostname()+"/devices/dev1", d.PrimaryKey, "", time.Now().Add(-time.Minute))
	otherScope, _ := sasauth.Sign(h.Hostname()+"/devices/dev2", d.PrimaryKey, "", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name string
		o    connOpts
	}{
		{"wrong key", connOpts{tls: true, password: wrongKey}},
		{"expired token", connOpts{tls: true, password: expired}},
		{"token for another device", connOpts{tls: true, password: otherScope}},
		{"garbage password", connOpts{tls: true, password: "not a token"}},
		{"username names another device", connOpts{tls: true, username: h.Hostname() + "/dev2/?api-version=2021-04-12"}},
		{"unknown device", connOpts{tls: true, clientID: "ghost", username: h.Hostname() + "/ghost/?api-version=2021-04-12"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dial(t, h, d, tc.o)
			if err == nil {
				t.Fatal("connected, want CONNACK not authorized")
			}
			if !strings.Contains(err.Error(), "not Authorized") {
				t.Errorf("error = %v, want CONNACK 5 (not authorized)", err)
			}
		})
	}
}

func TestMQTT_DeviceConfinedToItsTopics(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	h.CreateDevice(t, "dev2")
	c := mustDial(t, h, d, connOpts{})
	got := c.subscribe(t, "devices/dev1/messages/devicebound/#", "$iothub/methods/POST/#", "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#")
	for i, q := range got {
		if q > 1 {
			t.Errorf("hub topic %d refused: SUBACK %#x (the SDKs would hang)", i, q)
		}
	}
	if got := c.subscribe(t, "devices/dev2/messages/devicebound/#"); got[0] != 0x80 {
		t.Errorf("subscribe to dev2's C2D: SUBACK %#x, want 0x80", got[0])
	}
	if got := c.subscribe(t, "#"); got[0] != 0x80 {
		t.Errorf("subscribe to #: SUBACK %#x, want 0x80", got[0])
	}
	// Publishing as another device ends the connection, whatever the QoS.
	c.Publish("devices/dev2/messages/events/", 0, false, "x")
	c.waitLost(t)
}

func TestMQTT_QoS2PublishClosesConnection(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	if got := c.subscribe(t, "devices/dev1/messages/devicebound/#"); got[0] != 1 {
		t.Errorf("QoS 2 subscription... requested 1, granted %d", got[0])
	}
	c.Publish("devices/dev1/messages/events/", 2, false, "x")
	c.waitLost(t)
}

func TestMQTT_SecondConnectionDropsFirst(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	first := mustDial(t, h, d, connOpts{})
	second := mustDial(t, h, d, connOpts{})
	first.waitLost(t)
	if !second.IsConnectionOpen() {
		t.Error("the newer connection was closed")
	}
}

// The SDKs connect with clean session off and never subscribe again after a
// reconnect, so their subscriptions must outlive connections and restarts.
func TestMQTT_PersistentSessionSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/methods/POST/#")
	c.Disconnect(100)

	h.Restart(t)
	mustDial(t, h, d, connOpts{})
	checkFor(t, 5*time.Second, func() error {
		if !h.IsSubscribed("dev1", "", "$iothub/methods/POST/#") {
			return errString("subscription not restored")
		}
		return nil
	})
}

func TestMQTT_SessionPresentAfterRestart(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "devices/dev1/messages/devicebound/#")
	c.Disconnect(100)
	h.Restart(t)

	opts := paho.NewClientOptions().AddBroker("tcp://" + h.MQTTAddr()).SetClientID("dev1").
		SetUsername(d.Username(h)).SetPassword(d.Token(t, h, time.Hour)).SetCleanSession(false).SetAutoReconnect(false)
	cl := paho.NewClient(opts)
	tok := cl.Connect()
	tok.Wait()
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(0)
	if !tok.(*paho.ConnectToken).SessionPresent() {
		t.Error("sessionPresent = false after a restart, want true")
	}
}

func TestMQTT_OverWebSocket(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{ws: true})
	c.subscribe(t, "devices/dev1/messages/devicebound/#")
	c.publish(t, "devices/dev1/messages/events/", 1, `{"t":1}`)
}

func TestMQTT_DisabledDevice(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	r := h.Do(t, http.MethodPut, "/devices/dev1", map[string]any{"deviceId": "dev1", "status": "disabled",
		"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": d.PrimaryKey, "secondaryKey": d.PrimaryKey}}},
		`If-Match: "*"`)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("disable: %d %s", r.StatusCode, r.Body)
	}
	c.waitLost(t)
	if _, err := dial(t, h, d, connOpts{}); err == nil {
		t.Fatal("a disabled device connected")
	}
}

func TestREST_Authorization(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	readOnly := "Authorization: " + h.ServiceToken(t, "registryRead")
	wrong, _ := sasauth.Sign(h.Hostname(), sasauth.DefaultServiceKey, "iothubowner", time.Now().Add(time.Hour))
	expired, _ := sasauth.Sign(h.Hostname(), sasauth.DefaultOwnerKey, "iothubowner", time.Now().Add(-time.Minute))

	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("owner GET: %d %s", r.StatusCode, r.Body)
	}
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil, readOnly); r.StatusCode != http.StatusOK {
		t.Fatalf("registryRead GET: %d %s", r.StatusCode, r.Body)
	}
	for _, tc := range []struct{ name, header string }{
		{"no token", "Authorization:"},
		{"wrong key", "Authorization: " + wrong},
		{"expired", "Authorization: " + expired},
		{"garbage", "Authorization: Bearer x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil, tc.header), 401, "IotHubUnauthorizedAccess")
		})
	}
	t.Run("registryRead may not write", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/dev9", map[string]any{"deviceId": "dev9"}, readOnly), 401, "IotHubUnauthorizedAccess")
		if r := h.Do(t, http.MethodGet, "/devices/dev9", nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("the refused write happened: GET answered %d", r.StatusCode)
		}
	})
	t.Run("service may not read the registry", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil, "Authorization: "+h.ServiceToken(t, "service")), 401, "IotHubUnauthorizedAccess")
	})
	t.Run("missing api-version", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1?api-version=", nil), 400, "InvalidProtocolVersion")
	})
}

func TestREST_PersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()))
	d := h.CreateDevice(t, "dev1")
	ca := string(h.CACertPEM())
	h.Restart(t)
	if string(h.CACertPEM()) != ca {
		t.Error("the CA changed across a restart; clients would stop trusting the hub")
	}
	r := h.Do(t, http.MethodGet, "/devices/dev1", nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("after restart: %d %s", r.StatusCode, r.Body)
	}
	mustDial(t, h, d, connOpts{tls: true})
}

func TestREST_NotFoundIsHubError(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/nope", nil), 404, "DeviceNotFound")
}
