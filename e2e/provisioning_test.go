package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

const dpsScope = provisioning.DefaultIDScope

// dpsServiceToken signs a provisioningserviceowner token.
func dpsServiceToken(t testing.TB, h *hubtest.Hub) string {
	t.Helper()
	tok, err := sasauth.Sign(h.Hostname(), provisioning.DefaultServiceKey, hub.DPSPolicyName, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signToken signs a SAS token for resource as the SDKs do.
func signToken(resource, key, keyName string) (string, error) {
	return sasauth.Sign(resource, key, keyName, time.Now().Add(time.Hour))
}

// dpsDeviceToken signs a registration token as the SDKs do.
func dpsDeviceToken(t *testing.T, scope, regID, key string) string {
	t.Helper()
	tok, err := sasauth.Sign(scope+"/registrations/"+regID, key, "registration", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func putEnrollment(t *testing.T, h *hubtest.Hub, e map[string]any) provisioning.Enrollment {
	t.Helper()
	r := h.Do(t, http.MethodPut, "/enrollments/"+e["registrationId"].(string)+"?api-version=2021-10-01", e, "Authorization: "+dpsServiceToken(t, h))
	if r.StatusCode != http.StatusOK {
		t.Fatalf("put enrollment: %d %s", r.StatusCode, r.Body)
	}
	var out provisioning.Enrollment
	r.JSON(t, &out)
	return out
}

// httpsRegister registers over HTTPS and polls until the operation ends.
func httpsRegister(t *testing.T, h *hubtest.Hub, scope, regID, token string) (int, provisioning.Operation, []byte) {
	t.Helper()
	base := "/" + scope + "/registrations/" + regID
	r := h.Do(t, http.MethodPut, base+"/register?api-version=2019-03-31", map[string]any{"registrationId": regID}, "Authorization: "+token)
	if r.StatusCode != http.StatusAccepted {
		return r.StatusCode, provisioning.Operation{}, r.Body
	}
	if r.Header.Get("retry-after") == "" {
		t.Errorf("202 without retry-after")
	}
	var op provisioning.Operation
	r.JSON(t, &op)
	if op.Status != "assigning" || op.OperationID == "" {
		t.Fatalf("register answer: %s", r.Body)
	}
	r = h.Do(t, http.MethodGet, base+"/operations/"+op.OperationID+"?api-version=2019-03-31", nil, "Authorization: "+token)
	var done provisioning.Operation
	if r.StatusCode == http.StatusOK {
		r.JSON(t, &done)
	}
	return r.StatusCode, done, r.Body
}

func TestProvisioningHTTPSSymmetricKey(t *testing.T) {
	h := hubtest.Start(t)
	e := putEnrollment(t, h, map[string]any{
		"registrationId": "dev-https", "deviceId": "dev-https-device",
		"attestation": map[string]any{"type": "symmetricKey"},
		"initialTwin": map[string]any{"tags": map[string]any{"site": "lab"}, "properties": map[string]any{"desired": map[string]any{"interval": 5}}},
	})
	key := e.Attestation.SymmetricKey.PrimaryKey
	if key == "" || e.ETag == "" || e.ProvisioningStatus != "enabled" {
		t.Fatalf("enrollment not completed: %+v", e)
	}

	status, op, body := httpsRegister(t, h, dpsScope, "dev-https", dpsDeviceToken(t, dpsScope, "dev-https", key))
	if status != http.StatusOK || op.Status != "assigned" {
		t.Fatalf("operation: %d %s", status, body)
	}
	st := op.RegistrationState
	if st.AssignedHub != h.Hostname() || st.DeviceID != "dev-https-device" || st.Substatus != "initialAssignment" {
		t.Fatalf("registration state: %s", body)
	}
	// The device exists with the enrollment's key and the initial twin.
	dev := &hubtest.Device{ID: "dev-https-device", PrimaryKey: key}
	c := mustDial(t, h, dev, connOpts{tls: true})
	c.Disconnect(0)
	r := h.Do(t, http.MethodGet, "/twins/dev-https-device", nil)
	var twin struct {
		Tags       map[string]any `json:"tags"`
		Properties struct {
			Desired map[string]any `json:"desired"`
		} `json:"properties"`
	}
	r.JSON(t, &twin)
	if twin.Tags["site"] != "lab" || twin.Properties.Desired["interval"] != float64(5) {
		t.Fatalf("initial twin not applied: %s", r.Body)
	}

	// Registering again migrates the device data: the twin is kept.
	h.Do(t, http.MethodPatch, "/twins/dev-https-device", map[string]any{"tags": map[string]any{"site": "moved"}})
	_, op, body = httpsRegister(t, h, dpsScope, "dev-https", dpsDeviceToken(t, dpsScope, "dev-https", key))
	if op.RegistrationState == nil || op.RegistrationState.Substatus != "deviceDataMigrated" {
		t.Fatalf("re-registration: %s", body)
	}
	r = h.Do(t, http.MethodGet, "/twins/dev-https-device", nil)
	r.JSON(t, &twin)
	if twin.Tags["site"] != "moved" {
		t.Fatalf("migrated twin changed: %s", r.Body)
	}

	// The service sees the registration state.
	r = h.Do(t, http.MethodGet, "/registrations/dev-https?api-version=2021-10-01", nil, "Authorization: "+dpsServiceToken(t, h))
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `"status":"assigned"`) {
		t.Fatalf("registration state: %d %s", r.StatusCode, r.Body)
	}
}

func TestProvisioningRefusals(t *testing.T) {
	h := hubtest.Start(t)
	e := putEnrollment(t, h, map[string]any{"registrationId": "dev-ok", "attestation": map[string]any{"type": "symmetricKey"}})
	key := e.Attestation.SymmetricKey.PrimaryKey
	off := putEnrollment(t, h, map[string]any{"registrationId": "dev-off", "provisioningStatus": "disabled", "attestation": map[string]any{"type": "symmetricKey"}})
	wrongKey := off.Attestation.SymmetricKey.PrimaryKey

	for _, tc := range []struct {
		name, scope, regID, key string
		status                  int
		opStatus                string
	}{
		{"wrong key", dpsScope, "dev-ok", wrongKey, http.StatusUnauthorized, ""},
		{"unknown scope", "0ne99999999", "dev-ok", key, http.StatusUnauthorized, ""},
		{"unknown registration", dpsScope, "dev-none", key, http.StatusUnauthorized, ""},
		{"disabled enrollment", dpsScope, "dev-off", wrongKey, http.StatusOK, "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, op, body := httpsRegister(t, h, tc.scope, tc.regID, dpsDeviceToken(t, tc.scope, tc.regID, tc.key))
			if status != tc.status || op.Status != tc.opStatus {
				t.Fatalf("got %d %q, want %d %q: %s", status, op.Status, tc.status, tc.opStatus, body)
			}
			if status == http.StatusUnauthorized && !strings.Contains(string(body), `"errorCode":401002`) {
				t.Fatalf("error body: %s", body)
			}
		})
	}
	r := h.Do(t, http.MethodGet, "/devices/dev-off", nil)
	if r.StatusCode != http.StatusNotFound {
		t.Fatalf("a disabled enrollment created its device: %d", r.StatusCode)
	}
	// The service API wants the provisioning policy, not the hub's.
	r = h.Do(t, http.MethodGet, "/enrollments/dev-ok?api-version=2021-10-01", nil)
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("hub token on the DPS API: %d", r.StatusCode)
	}
}

func TestProvisioningMQTTGroup(t *testing.T) {
	h := hubtest.Start(t)
	r := h.Do(t, http.MethodPut, "/enrollmentGroups/fleet?api-version=2021-10-01", map[string]any{
		"enrollmentGroupId": "fleet", "attestation": map[string]any{"type": "symmetricKey"},
		"initialTwin": map[string]any{"properties": map[string]any{"desired": map[string]any{"fw": "1.0"}}},
	}, "Authorization: "+dpsServiceToken(t, h))
	if r.StatusCode != http.StatusOK {
		t.Fatalf("put group: %d %s", r.StatusCode, r.Body)
	}
	var g provisioning.EnrollmentGroup
	r.JSON(t, &g)
	key, err := provisioning.DeriveKey(g.Attestation.SymmetricKey.PrimaryKey, "sensor-7")
	if err != nil {
		t.Fatal(err)
	}

	d := &hubtest.Device{ID: "sensor-7"}
	c := mustDial(t, h, d, connOpts{tls: true, clientID: "sensor-7",
		username: dpsScope + "/registrations/sensor-7/api-version=2019-03-31&ClientVersion=test",
		password: dpsDeviceToken(t, dpsScope, "sensor-7", key), clean: true})
	c.subscribe(t, "$dps/registrations/res/#")
	c.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=1", 1, `{"registrationId":"sensor-7"}`)
	m := c.waitFor(t, "$dps/registrations/res/202/?$rid=1")
	if !strings.Contains(m.Topic(), "retry-after=") {
		t.Errorf("202 without retry-after: %s", m.Topic())
	}
	var op provisioning.Operation
	if err := json.Unmarshal(m.Payload(), &op); err != nil || op.OperationID == "" {
		t.Fatalf("register answer: %s", m.Payload())
	}
	c.publish(t, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId="+url.QueryEscape(op.OperationID), 1, " ")
	m = c.waitFor(t, "$dps/registrations/res/200/?$rid=2")
	var done provisioning.Operation
	if err := json.Unmarshal(m.Payload(), &done); err != nil || done.Status != "assigned" || done.RegistrationState.DeviceID != "sensor-7" {
		t.Fatalf("operation: %s", m.Payload())
	}
	// A DPS client is confined to its topics: a hub topic closes it.
	c.Publish("devices/sensor-7/messages/events/", 1, false, "x")
	c.waitLost(t)

	// The device connects to the hub with its derived key, and gets the
	// group's initial twin.
	d.PrimaryKey = key
	hc := mustDial(t, h, d, connOpts{tls: true})
	hc.subscribe(t, "$iothub/twin/res/#")
	hc.publish(t, "$iothub/twin/GET/?$rid=9", 0, "")
	m = hc.waitFor(t, "$iothub/twin/res/200/?$rid=9")
	if !strings.Contains(string(m.Payload()), `"fw":"1.0"`) {
		t.Fatalf("initial twin: %s", m.Payload())
	}
	// A wrong key is refused at CONNECT.
	if _, err := dial(t, h, &hubtest.Device{ID: "sensor-8"}, connOpts{tls: true, clientID: "sensor-8",
		username: dpsScope + "/registrations/sensor-8/api-version=2019-03-31",
		password: dpsDeviceToken(t, dpsScope, "sensor-8", key), clean: true}); err == nil {
		t.Fatal("a token signed with another device's key was accepted")
	}
	// Group registrations are listed by the service.
	r = h.Do(t, http.MethodPost, "/registrations/fleet/query?api-version=2021-10-01", map[string]any{"query": "*"}, "Authorization: "+dpsServiceToken(t, h))
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `"registrationId":"sensor-7"`) {
		t.Fatalf("group registrations: %d %s", r.StatusCode, r.Body)
	}
}

// TestProvisioningX509CAGroup: a device whose certificate (CN = its
// registration id) chains to an enrollment group's signing certificate
// registers over MQTT with no password, then connects to the hub with the
// same certificate.
func TestProvisioningX509CAGroup(t *testing.T) {
	h := hubtest.Start(t)
	ca := certificate(t, "dps-test-root", true, nil)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]}))
	r := h.Do(t, http.MethodPut, "/enrollmentGroups/x509-fleet?api-version=2021-10-01", map[string]any{
		"enrollmentGroupId": "x509-fleet",
		"attestation":       map[string]any{"type": "x509", "x509": map[string]any{"signingCertificates": map[string]any{"primary": map[string]any{"certificate": caPEM}}}},
	}, "Authorization: "+dpsServiceToken(t, h))
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `"subjectName":"CN=dps-test-root"`) {
		t.Fatalf("put group: %d %s", r.StatusCode, r.Body)
	}
	if strings.Contains(string(r.Body), "BEGIN CERTIFICATE") || strings.Contains(string(r.Body), `"certificate"`) {
		t.Fatalf("the service API returned the certificate itself: %s", r.Body)
	}
	leaf := certificate(t, "x509-dev", false, &ca)
	stranger := certificate(t, "x509-dev", false, nil)

	dialDPS := func(cert *tls.Certificate) (*mqttConn, error) {
		c := &mqttConn{lost: make(chan error, 1)}
		cfg := h.TLSConfig()
		cfg.Certificates = []tls.Certificate{*cert}
		opts := paho.NewClientOptions().AddBroker("tls://" + h.MQTTSAddr()).SetTLSConfig(cfg).SetProtocolVersion(4).
			SetClientID("x509-dev").SetUsername(dpsScope + "/registrations/x509-dev/api-version=2019-03-31").
			SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
				c.mu.Lock()
				c.received = append(c.received, m)
				c.mu.Unlock()
			})
		c.Client = paho.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(15 * time.Second) {
			return nil, errors.New("connect timed out")
		}
		if err := tok.Error(); err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c, nil
	}
	if _, err := dialDPS(&stranger); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	c, err := dialDPS(&leaf)
	if err != nil {
		t.Fatal(err)
	}
	c.subscribe(t, "$dps/registrations/res/#")
	c.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=1", 1, `{"registrationId":"x509-dev"}`)
	var op provisioning.Operation
	if err := json.Unmarshal(c.waitFor(t, "$dps/registrations/res/202/").Payload(), &op); err != nil {
		t.Fatal(err)
	}
	c.publish(t, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId="+op.OperationID, 1, "")
	m := c.waitFor(t, "$dps/registrations/res/200/?$rid=2")
	if !strings.Contains(string(m.Payload()), `"status":"assigned"`) {
		t.Fatalf("operation: %s", m.Payload())
	}
	c.Disconnect(0)
	if _, err := dialX509(t, h, "x509-dev", "", &leaf); err != nil {
		t.Fatalf("the provisioned device cannot connect to the hub with its certificate: %v", err)
	}
}

// TestProvisioningSeed: enrollments and groups of the example seed files
// exist after start, and their devices register.
func TestProvisioningSeed(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"seed.json", "seed.yaml"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			path, _ := filepath.Abs(filepath.Join("..", "examples", file))
			h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.SeedFile = path }))
			const key = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="
			status, op, body := httpsRegister(t, h, dpsScope, "provisioned-thermostat", dpsDeviceToken(t, dpsScope, "provisioned-thermostat", key))
			if status != http.StatusOK || op.Status != "assigned" || op.RegistrationState.DeviceID != "thermostat2" {
				t.Fatalf("seeded enrollment: %d %s", status, body)
			}
			derived, _ := provisioning.DeriveKey("gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp8=", "sensor-1")
			if status, op, body = httpsRegister(t, h, dpsScope, "sensor-1", dpsDeviceToken(t, dpsScope, "sensor-1", derived)); status != http.StatusOK || op.Status != "assigned" {
				t.Fatalf("seeded group: %d %s", status, body)
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"enrollments":[{"registrationId":"x","attestation":{"type":"tpm"}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := hub.DefaultConfig()
	cfg.InMemory, cfg.SeedFile = true, bad
	cfg.MQTTSAddr, cfg.MQTTAddr, cfg.HTTPSAddr, cfg.HTTPAddr = "127.0.0.1:0", "", "", ""
	if h, err := hub.Open(context.Background(), cfg); err == nil {
		h.Close()
		t.Fatal("a seed file with an invalid enrollment started the hub")
	} else if !strings.Contains(err.Error(), "enrollment") {
		t.Fatalf("error: %v", err)
	}
}

// TestProvisioningMQTTWebSockets: DPS over MQTT over WebSockets on 443, as
// the SDKs' MqttWs transports use it.
func TestProvisioningMQTTWebSockets(t *testing.T) {
	h := hubtest.Start(t)
	e := putEnrollment(t, h, map[string]any{"registrationId": "ws-dev", "attestation": map[string]any{"type": "symmetricKey"}})
	c := mustDial(t, h, &hubtest.Device{ID: "ws-dev"}, connOpts{ws: true, clean: true, clientID: "ws-dev",
		username: dpsScope + "/registrations/ws-dev/api-version=2019-03-31",
		password: dpsDeviceToken(t, dpsScope, "ws-dev", e.Attestation.SymmetricKey.PrimaryKey)})
	c.subscribe(t, "$dps/registrations/res/#")
	c.publish(t, "$dps/registrations/PUT/iotdps-register/?$rid=7", 1, `{"registrationId":"ws-dev"}`)
	var op provisioning.Operation
	if err := json.Unmarshal(c.waitFor(t, "$dps/registrations/res/202/?$rid=7").Payload(), &op); err != nil {
		t.Fatal(err)
	}
	c.publish(t, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=8&operationId="+op.OperationID, 1, "")
	if m := c.waitFor(t, "$dps/registrations/res/200/?$rid=8"); !strings.Contains(string(m.Payload()), `"deviceId":"ws-dev"`) {
		t.Fatalf("operation: %s", m.Payload())
	}
	// A hub device may not use DPS topics.
	d := h.CreateDevice(t, "plain-dev")
	hc := mustDial(t, h, d, connOpts{tls: true})
	hc.Publish("$dps/registrations/PUT/iotdps-register/?$rid=1", 1, false, "{}")
	hc.waitLost(t)
}
