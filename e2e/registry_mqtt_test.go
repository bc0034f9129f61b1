package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Registry identities on MQTT: modules with their own keys, X.509 devices
// (digest §2.5), and what deleting an identity does to its session and twin.

func TestRegistry_ModuleConnectsWithItsOwnKey(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	r := h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1"})
	m := decodeMap(t, r)
	key := m["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	mod := &hubtest.Device{ID: "dev1", ModuleID: "m1", PrimaryKey: key}
	if got := mod.Username(h); got != h.Hostname()+"/dev1/m1/?api-version=2021-04-12" {
		t.Fatalf("username %q", got)
	}
	c := mustDial(t, h, mod, connOpts{tls: true})
	c.subscribe(t, "$iothub/twin/res/#")
	checkFor(t, 5*time.Second, func() error {
		if s := decodeMap(t, h.Do(t, http.MethodGet, "/devices/dev1/modules/m1", nil))["connectionState"]; s != "Connected" {
			return errString("module connectionState " + s.(string))
		}
		return nil
	})

	// The device's key does not open the module, nor a device-scoped token.
	dev := &hubtest.Device{ID: "dev1", ModuleID: "m1", PrimaryKey: decodeMap(t, h.Do(t, http.MethodGet, "/devices/dev1", nil))["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)}
	if _, err := dial(t, h, dev, connOpts{tls: true}); err == nil {
		t.Error("a module connected with its device's key")
	}

	// Deleting the device closes the module's session too.
	if r := h.Do(t, http.MethodDelete, "/devices/dev1", nil, `If-Match: "*"`); r.StatusCode != 204 {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	c.waitLost(t)
	checkHubError(t, h.Do(t, http.MethodGet, "/twins/dev1/modules/m1", nil), 404, "ModuleNotFound")
}

func TestRegistry_DeleteClosesSessionAndRemovesTwin(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/methods/POST/#")
	if r := h.Do(t, http.MethodPatch, "/twins/dev1", map[string]any{"tags": map[string]any{"a": 1}}); r.StatusCode != 200 {
		t.Fatalf("patch twin: %d %s", r.StatusCode, r.Body)
	}
	if r := h.Do(t, http.MethodDelete, "/devices/dev1", nil, `If-Match: "*"`); r.StatusCode != 204 {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	c.waitLost(t)
	checkHubError(t, h.Do(t, http.MethodGet, "/twins/dev1", nil), 404, "DeviceNotFound")
	if _, err := dial(t, h, d, connOpts{}); err == nil {
		t.Error("a deleted device connected")
	}
	// Recreated, it starts with a fresh twin and no stored subscriptions.
	h.CreateDevice(t, "dev1")
	if tw := h.Do(t, http.MethodGet, "/twins/dev1", nil); strings.Contains(string(tw.Body), `"a":1`) {
		t.Errorf("the old twin survived: %s", tw.Body)
	}
	if h.IsSubscribed("dev1", "", "$iothub/methods/POST/#") {
		t.Error("the old session's subscription survived")
	}
}

func TestRegistry_BulkDeleteClosesSession(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	if r, _ := bulk(t, h, map[string]any{"id": "dev1", "importMode": "delete"}); r.StatusCode != 200 {
		t.Fatalf("bulk delete: %d %s", r.StatusCode, r.Body)
	}
	c.waitLost(t)

	d2 := h.CreateDevice(t, "dev2")
	c2 := mustDial(t, h, d2, connOpts{})
	if r, _ := bulk(t, h, map[string]any{"id": "dev2", "importMode": "update", "status": "disabled"}); r.StatusCode != 200 {
		t.Fatalf("bulk disable: %d %s", r.StatusCode, r.Body)
	}
	c2.waitLost(t)
}

// certificate makes a certificate for cn, signed by parent (self-signed when
// parent is nil).
func certificate(t *testing.T, cn string, isCA bool, parent *tls.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	signer, signerCert := any(key), tmpl
	if parent != nil {
		signer, signerCert = parent.PrivateKey, parent.Leaf
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	c := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	if parent != nil {
		c.Certificate = append(c.Certificate, parent.Certificate...)
	}
	return c
}

func thumbprints(c tls.Certificate) (sha1Hex, sha256Hex string) {
	s1 := sha1.Sum(c.Certificate[0])
	s2 := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(s1[:]), hex.EncodeToString(s2[:])
}

// dialX509 connects over TLS with a client certificate (or none) and no
// password, as the SDKs do for X.509 identities (digest §2.5).
func dialX509(t *testing.T, h *hubtest.Hub, deviceID, moduleID string, cert *tls.Certificate) (paho.Client, error) {
	t.Helper()
	clientID := deviceID
	if moduleID != "" {
		clientID += "/" + moduleID
	}
	cfg := h.TLSConfig()
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	opts := paho.NewClientOptions().AddBroker("tls://" + h.MQTTSAddr()).SetTLSConfig(cfg).SetProtocolVersion(4).
		SetClientID(clientID).SetUsername(h.Hostname() + "/" + clientID + "/?api-version=2021-04-12").
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return c, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return c, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func wantRefused(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("connected, want CONNACK 5 (not authorized)")
	}
	if !strings.Contains(err.Error(), "not Authorized") {
		t.Errorf("error = %v, want CONNACK 5 (not authorized)", err)
	}
}

func TestRegistry_X509SelfSigned(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	certA := certificate(t, "x1", false, nil)
	certB := certificate(t, "x2", false, nil)
	a1, a256 := thumbprints(certA)
	_, b256 := thumbprints(certB)
	other := certificate(t, "x1", false, nil)

	// x1 registers certA's SHA-1 thumbprint (lower case), x2 certB's SHA-256 as secondary.
	for _, d := range []struct{ id, primary, secondary string }{
		{"x1", a1, ""},
		{"x2", a256, strings.ToUpper(b256)},
	} {
		r := h.Do(t, http.MethodPut, "/devices/"+d.id, map[string]any{"deviceId": d.id, "authentication": map[string]any{
			"type": "selfSigned", "x509Thumbprint": map[string]any{"primaryThumbprint": d.primary, "secondaryThumbprint": d.secondary}}})
		if r.StatusCode != 200 {
			t.Fatalf("create %s: %d %s", d.id, r.StatusCode, r.Body)
		}
		m := decodeMap(t, r)
		checkAuthShapeX509(t, m, "selfSigned")
	}
	t.Run("SHA-1 thumbprint", func(t *testing.T) {
		if _, err := dialX509(t, h, "x1", "", &certA); err != nil {
			t.Fatal(err)
		}
		var tw struct{ AuthenticationType string }
		h.Do(t, http.MethodGet, "/twins/x1", nil).JSON(t, &tw)
		if tw.AuthenticationType != "selfSigned" {
			t.Errorf("twin authenticationType = %q", tw.AuthenticationType)
		}
	})
	t.Run("SHA-256 secondary thumbprint", func(t *testing.T) {
		if _, err := dialX509(t, h, "x2", "", &certB); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SHA-256 primary thumbprint", func(t *testing.T) {
		if _, err := dialX509(t, h, "x2", "", &certA); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong thumbprint", func(t *testing.T) {
		_, err := dialX509(t, h, "x1", "", &other)
		wantRefused(t, err)
	})
	t.Run("another device's certificate", func(t *testing.T) {
		_, err := dialX509(t, h, "x1", "", &certB)
		wantRefused(t, err)
	})
	t.Run("no certificate", func(t *testing.T) {
		_, err := dialX509(t, h, "x1", "", nil)
		wantRefused(t, err)
	})
	t.Run("SAS device with a certificate and no password", func(t *testing.T) {
		h.CreateDevice(t, "sas1")
		sc := certificate(t, "sas1", false, nil)
		_, err := dialX509(t, h, "sas1", "", &sc)
		wantRefused(t, err)
	})
}

func checkAuthShapeX509(t *testing.T, m map[string]any, typ string) {
	t.Helper()
	a := m["authentication"].(map[string]any)
	if a["type"] != typ {
		t.Errorf("type = %v, want %s", a["type"], typ)
	}
	sk := a["symmetricKey"].(map[string]any)
	if sk["primaryKey"] != nil || sk["secondaryKey"] != nil {
		t.Errorf("symmetricKey = %v, want nulls", sk)
	}
}

func TestRegistry_X509CertificateAuthority(t *testing.T) {
	t.Parallel()
	ca := certificate(t, "Test Device CA", true, nil)
	rogue := certificate(t, "Rogue CA", true, nil)
	caFile := filepath.Join(t.TempDir(), "device-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.DeviceCAFiles = []string{caFile} }))
	for _, path := range []string{"/devices/ca1", "/devices/ca2"} {
		r := h.Do(t, http.MethodPut, path, map[string]any{"authentication": map[string]any{"type": "certificateAuthority"}})
		if r.StatusCode != 200 {
			t.Fatalf("create: %d %s", r.StatusCode, r.Body)
		}
		m := decodeMap(t, r)
		checkAuthShapeX509(t, m, "certificateAuthority")
		xt := m["authentication"].(map[string]any)["x509Thumbprint"].(map[string]any)
		if xt["primaryThumbprint"] != nil {
			t.Errorf("x509Thumbprint = %v, want nulls", xt)
		}
	}
	r := h.Do(t, http.MethodPut, "/devices/ca1/modules/mod", map[string]any{"authentication": map[string]any{"type": "certificateAuthority"}})
	if r.StatusCode != 200 {
		t.Fatalf("create module: %d %s", r.StatusCode, r.Body)
	}

	good := certificate(t, "ca1", false, &ca)
	t.Run("chain to the CA, CN is the device id", func(t *testing.T) {
		if _, err := dialX509(t, h, "ca1", "", &good); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("module: CN is device/module", func(t *testing.T) {
		mc := certificate(t, "ca1/mod", false, &ca)
		if _, err := dialX509(t, h, "ca1", "mod", &mc); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("CN mismatch", func(t *testing.T) {
		_, err := dialX509(t, h, "ca2", "", &good)
		wantRefused(t, err)
	})
	t.Run("unknown CA", func(t *testing.T) {
		bad := certificate(t, "ca2", false, &rogue)
		_, err := dialX509(t, h, "ca2", "", &bad)
		wantRefused(t, err)
	})
	t.Run("no certificate", func(t *testing.T) {
		_, err := dialX509(t, h, "ca2", "", nil)
		wantRefused(t, err)
	})
}
