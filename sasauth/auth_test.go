package sasauth

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

const devKey = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="

var now = time.Unix(1_800_000_000, 0)

func newAuth() *Authenticator {
	return &Authenticator{Policies: DefaultPolicies(""), Now: func() time.Time { return now }}
}

func mustSign(t *testing.T, resource, key, skn string, exp time.Time) string {
	t.Helper()
	s, err := Sign(resource, key, skn, exp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParse_FieldOrderAndEncodings(t *testing.T) {
	good := mustSign(t, "localhost/devices/d1", devKey, "", now.Add(time.Hour))
	tok, _ := Parse(good)
	sig := strings.TrimPrefix(strings.Split(good, "&")[1], "sig=")
	for _, tc := range []struct{ name, token string }{
		{"sdk order", good},
		{"java order, empty skn", "SharedAccessSignature sig=" + sig + "&se=" + "1800003600" + "&skn=&sr=" + tok.ResourceURI},
		{"raw slash in sig (python service)", strings.Replace(good, "sig="+sig, "sig="+strings.ReplaceAll(sig, "%2F", "/"), 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.token)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !p.VerifyKey(devKey) {
				t.Errorf("signature did not verify")
			}
		})
	}
	for _, bad := range []string{"", "sr=a&sig=b&se=1", "SharedAccessSignature sr=a&se=1", "SharedAccessSignature sr=a&sig=!!&se=1", "SharedAccessSignature sr=a&sig=YQ==&se=x"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted a malformed token", bad)
		}
	}
}

// Each SDK escapes sr differently (lower-case hex, %2a for '*'); the HMAC is
// over the raw string, so a token whose sr differs only in escaping from ours
// must still verify as long as it was signed over what it carries.
func TestVerify_RawResourceURI(t *testing.T) {
	sr := "localhost%2fdevices%2fd%2a1"
	tok := Token{ResourceURI: sr, Expiry: now.Unix() + 60}
	raw := []byte("abcdefghijklmnopqrstuvwxyz123456")
	tok.Signature = signature(raw, sr, tok.Expiry)
	if !tok.VerifyKey(devKey) {
		t.Fatal("raw sr signature rejected")
	}
	if !tok.Covers("host/devices/d*1") {
		t.Errorf("decoded resource %q should cover the device", tok.Resource())
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		sr, target string
		want       bool
	}{
		{"localhost", "host/devices/d1", true},
		{"localhost/devices/d1", "host/devices/d1", true},
		{"LOCALHOST/Devices/d1/", "host/devices/d1", true},
		{"localhost/devices/d1", "host/devices/d10", false},
		{"localhost/devices/d2", "host/devices/d1", false},
		{"localhost/devices/d1/modules/m1", "host/devices/d1", false},
		{"localhost/devices/d1/modules/m1", "host/devices/d1/modules/m1", true},
		{url.QueryEscape(url.QueryEscape("h/devices/d/modules/m")), "host/devices/d/modules/m", true},
		// Ids are case-sensitive; only the words between them are not.
		{"localhost/devices/Dev1", "host/devices/dev1", false},
		{"localhost/devices/d1/modules/M1", "host/devices/d1/modules/m1", false},
		{"localhost/DEVICES/d1/MODULES/m1", "host/devices/d1/modules/m1", true},
		// Ids the hub allows: '+', '#' and '%' (decoded exactly once).
		{"localhost%2Fdevices%2Fa%2Bb", "host/devices/a+b", true},
		{"localhost%2Fdevices%2Fa+b", "host/devices/a+b", true},
		{"localhost%2Fdevices%2Fa%23b", "host/devices/a#b", true},
		{"localhost%2Fdevices%2Fa%2541", "host/devices/a%41", true},
		{"localhost%2Fdevices%2Fa%2541", "host/devices/aA", true}, // the signature decides
		{"localhost%2Fdevices%2Fa%2Bb", "host/devices/a b", false},
	} {
		tok := Token{ResourceURI: url.QueryEscape(tc.sr)}
		if strings.Contains(tc.sr, "%") {
			tok.ResourceURI = tc.sr
		}
		if got := tok.Covers(tc.target); got != tc.want {
			t.Errorf("sr %q covers %q = %v, want %v", tc.sr, tc.target, got, tc.want)
		}
	}
}

func TestService(t *testing.T) {
	a := newAuth()
	owner := mustSign(t, "localhost", DefaultOwnerKey, "iothubowner", now.Add(time.Hour))
	for _, tc := range []struct {
		name   string
		header string
		need   Rights
		ok     bool
	}{
		{"owner may write", owner, RegistryWrite, true},
		{"registryRead may read", mustSign(t, "localhost", DefaultRegistryReadKey, "registryRead", now.Add(time.Hour)), RegistryRead, true},
		{"registryRead may not write", mustSign(t, "localhost", DefaultRegistryReadKey, "registryRead", now.Add(time.Hour)), RegistryWrite, false},
		{"service may not read registry", mustSign(t, "localhost", DefaultServiceKey, "service", now.Add(time.Hour)), RegistryRead, false},
		{"wrong key", mustSign(t, "localhost", DefaultServiceKey, "iothubowner", now.Add(time.Hour)), RegistryRead, false},
		{"expired", mustSign(t, "localhost", DefaultOwnerKey, "iothubowner", now.Add(-time.Second)), RegistryRead, false},
		{"no skn", mustSign(t, "localhost", DefaultOwnerKey, "", now.Add(time.Hour)), RegistryRead, false},
		{"unknown policy", mustSign(t, "localhost", DefaultOwnerKey, "nobody", now.Add(time.Hour)), RegistryRead, false},
		{"missing", "", RegistryRead, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Service(tc.header, tc.need)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && iothub.CodeOf(err) != iothub.IotHubUnauthorizedAccess {
				t.Errorf("code = %v, want 401002", iothub.CodeOf(err))
			}
		})
	}
}

func TestDevice(t *testing.T) {
	a := newAuth()
	exp := now.Add(time.Hour)
	for _, tc := range []struct {
		name, token, device, module string
		ok                          bool
	}{
		{"device key", mustSign(t, "localhost/devices/d1", devKey, "", exp), "d1", "", true},
		{"go sdk bare host", mustSign(t, "localhost", devKey, "", exp), "d1", "", true},
		{"module key", mustSign(t, "localhost/devices/d1/modules/m1", devKey, "", exp), "d1", "m1", true},
		{"device policy", mustSign(t, "localhost/devices/d1", DefaultDeviceKey, "device", exp), "d1", "", true},
		{"service policy lacks DeviceConnect", mustSign(t, "localhost/devices/d1", DefaultServiceKey, "service", exp), "d1", "", false},
		{"other device's scope", mustSign(t, "localhost/devices/d2", devKey, "", exp), "d1", "", false},
		{"wrong key", mustSign(t, "localhost/devices/d1", DefaultOwnerKey, "", exp), "d1", "", false},
		{"expired", mustSign(t, "localhost/devices/d1", devKey, "", now), "d1", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Device(tc.token, tc.device, tc.module, devKey, "")
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func BenchmarkDeviceVerify(b *testing.B) {
	a := &Authenticator{Policies: DefaultPolicies("")}
	tok, _ := Sign("localhost/devices/d1", devKey, "", time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Device(tok, "d1", "", devKey, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// A remembered token is accepted only while everything the full check
// looks at still holds: the key that signed it is still the policy's or
// the identity's, the clock is before its expiry, the policy grants the
// right, its resource covers the identity.
func TestCache_NoStaleAcceptance(t *testing.T) {
	const otherKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	clock := now
	newA := func() *Authenticator {
		return &Authenticator{Policies: DefaultPolicies(""), Now: func() time.Time { return clock }}
	}
	owner := mustSign(t, "localhost", DefaultOwnerKey, "iothubowner", now.Add(time.Hour))
	devTok := mustSign(t, "localhost/devices/d1", devKey, "", now.Add(time.Hour))
	hostTok := mustSign(t, "localhost", devKey, "", now.Add(time.Hour))
	policyTok := mustSign(t, "localhost", DefaultDeviceKey, "device", now.Add(time.Hour))
	for _, tc := range []struct {
		name  string
		first func(a *Authenticator) error // must pass and fill the cache
		then  func(a *Authenticator) error
		ok    bool
	}{
		{"service token again", func(a *Authenticator) error { _, err := a.Service(owner, RegistryRead); return err },
			func(a *Authenticator) error { _, err := a.Service(owner, RegistryWrite); return err }, true},
		{"service policy key regenerated", func(a *Authenticator) error { _, err := a.Service(owner, RegistryRead); return err },
			func(a *Authenticator) error {
				a.Policies[0].PrimaryKey, a.Policies[0].SecondaryKey = otherKey, otherKey
				_, err := a.Service(owner, RegistryRead)
				return err
			}, false},
		{"service token expires on the clock", func(a *Authenticator) error { _, err := a.Service(owner, RegistryRead); return err },
			func(a *Authenticator) error {
				clock = now.Add(time.Hour)
				_, err := a.Service(owner, RegistryRead)
				return err
			}, false},
		{"service policy lacks the right", func(a *Authenticator) error { _, err := a.Service(owner, RegistryRead); return err },
			func(a *Authenticator) error {
				a.Policies[0].Rights = RegistryRead
				_, err := a.Service(owner, RegistryWrite)
				return err
			}, false},
		{"device token again", func(a *Authenticator) error { return a.Device(devTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { return a.Device(devTok, "d1", "", devKey, "") }, true},
		{"device key regenerated", func(a *Authenticator) error { return a.Device(devTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { return a.Device(devTok, "d1", "", otherKey, otherKey) }, false},
		{"device key moved to secondary", func(a *Authenticator) error { return a.Device(devTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { return a.Device(devTok, "d1", "", otherKey, devKey) }, true},
		{"device token for another device", func(a *Authenticator) error { return a.Device(devTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { return a.Device(devTok, "d2", "", devKey, "") }, false},
		{"host token covers another device with the same key", func(a *Authenticator) error { return a.Device(hostTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { return a.Device(hostTok, "d2", "", devKey, "") }, true},
		{"host token, other device's keys differ", func(a *Authenticator) error { return a.Device(hostTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { return a.Device(hostTok, "d2", "", otherKey, "") }, false},
		{"device token expires on the clock", func(a *Authenticator) error { return a.Device(devTok, "d1", "", devKey, "") },
			func(a *Authenticator) error {
				clock = now.Add(2 * time.Hour)
				return a.Device(devTok, "d1", "", devKey, "")
			}, false},
		{"device policy loses DeviceConnect", func(a *Authenticator) error { return a.Device(policyTok, "d1", "", devKey, "") },
			func(a *Authenticator) error {
				a.Policies[2].Rights = RegistryRead
				return a.Device(policyTok, "d1", "", devKey, "")
			}, false},
		{"device policy token is no service token", func(a *Authenticator) error { return a.Device(policyTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { _, err := a.Service(policyTok, ServiceConnect); return err }, false},
		{"device key token is no service token", func(a *Authenticator) error { return a.Device(devTok, "d1", "", devKey, "") },
			func(a *Authenticator) error { _, err := a.Service(devTok, 0); return err }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock = now
			a := newA()
			if err := tc.first(a); err != nil {
				t.Fatalf("first check: %v", err)
			}
			if a.CachedTokens() != 1 {
				t.Fatalf("cached %d tokens, want 1", a.CachedTokens())
			}
			err := tc.then(a)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && iothub.CodeOf(err) != iothub.IotHubUnauthorizedAccess {
				t.Errorf("code = %v, want 401002", iothub.CodeOf(err))
			}
		})
	}
}

// Failures are not remembered, and the cache never holds more than its
// bound however many distinct valid tokens arrive.
func TestCache_Bounded(t *testing.T) {
	a := newAuth()
	if _, err := a.Service(mustSign(t, "localhost", DefaultServiceKey, "iothubowner", now.Add(time.Hour)), 0); err == nil {
		t.Fatal("wrong key accepted")
	}
	if n := a.CachedTokens(); n != 0 {
		t.Fatalf("a failed token was cached (%d)", n)
	}
	for i := range maxCachedTokens + 50 {
		tok := mustSign(t, "localhost", DefaultOwnerKey, "iothubowner", now.Add(time.Hour+time.Duration(i)*time.Second))
		if _, err := a.Service(tok, RegistryRead); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.CachedTokens(); n > maxCachedTokens || n < maxCachedTokens-1 {
		t.Fatalf("cached %d tokens, bound %d", n, maxCachedTokens)
	}
	n := 0
	a.verified.Range(func(any, any) bool { n++; return true })
	if n != a.CachedTokens() {
		t.Errorf("count %d, entries %d", a.CachedTokens(), n)
	}
}

func BenchmarkServiceVerify(b *testing.B) {
	a := &Authenticator{Policies: DefaultPolicies("")}
	tok, _ := Sign("localhost", DefaultOwnerKey, "iothubowner", time.Now().Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Service(tok, ServiceConnect); err != nil {
			b.Fatal(err)
		}
	}
}
