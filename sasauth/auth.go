package sasauth

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Authenticator checks tokens against the hub's policies and device keys.
//
// It remembers, per token string, which key verified the token's signature
// (at most maxCachedTokens tokens), so a client that sends the same token
// on every request (the service SDKs reuse theirs for up to an hour) costs
// one parse and one HMAC, not one per request. The cache only stands in for
// the HMAC: every call still checks that the remembered key is one of the
// policy's or the identity's keys now (a regenerated key drops the token),
// the token's expiry on the clock, the policy's rights and the resource;
// callers still check the identity's status (disabled devices) themselves.
type Authenticator struct {
	Policies []Policy
	// Now is the clock used for expiry; time.Now when nil.
	Now func() time.Time

	verified sync.Map // token string → *verifiedToken
	cached   atomic.Int64
}

// maxCachedTokens bounds the verified-token cache (about 300 bytes each).
const maxCachedTokens = 4096

// verifiedToken is a token whose signature key verified. Never changed
// once stored.
type verifiedToken struct {
	tok Token
	key string // the base64 key that signed it
	// covers is the device or module target ("host/devices/d1") its
	// resource was found to cover, if it was checked for a device.
	covers string
}

// lookup returns the cached verification of s, if s is cached and has not
// expired at now (expired entries are dropped).
func (a *Authenticator) lookup(s string, now time.Time) *verifiedToken {
	v, ok := a.verified.Load(s)
	if !ok {
		return nil
	}
	vt := v.(*verifiedToken)
	if vt.tok.Expired(now) {
		if a.verified.CompareAndDelete(s, v) {
			a.cached.Add(-1)
		}
		return nil
	}
	return vt
}

// remember caches a verified token; when the cache is full it first drops
// some entry (sync.Map ranges from a random point).
func (a *Authenticator) remember(s string, vt *verifiedToken) {
	if a.cached.Load() >= maxCachedTokens {
		a.verified.Range(func(k, v any) bool {
			if a.verified.CompareAndDelete(k, v) {
				a.cached.Add(-1)
			}
			return false
		})
	}
	if _, loaded := a.verified.LoadOrStore(s, vt); !loaded {
		a.cached.Add(1)
	}
}

// CachedTokens is the number of tokens whose verification is remembered.
func (a *Authenticator) CachedTokens() int { return int(a.cached.Load()) }

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func unauthorized(format string, args ...any) error {
	return iothub.Errorf(iothub.IotHubUnauthorizedAccess, format, args...)
}

// Policy returns the named policy, matched case-insensitively as the hub does.
func (a *Authenticator) Policy(name string) (Policy, bool) {
	for _, p := range a.Policies {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Policy{}, false
}

// policyKey returns which of the policy's keys verifies t, if any.
func policyKey(t Token, p Policy) (string, bool) {
	switch {
	case t.VerifyKey(p.PrimaryKey):
		return p.PrimaryKey, true
	case p.SecondaryKey != p.PrimaryKey && t.VerifyKey(p.SecondaryKey):
		return p.SecondaryKey, true
	}
	return "", false
}

// isPolicyKey reports whether key is one of p's keys now.
func isPolicyKey(key string, p Policy) bool {
	return key != "" && (key == p.PrimaryKey || key == p.SecondaryKey)
}

// Service authorizes a service-side call from its Authorization header value.
// The token must name a policy (skn), be signed with one of its keys, be
// unexpired, and the policy must grant need. Returns 401002
// IotHubUnauthorizedAccess otherwise.
func (a *Authenticator) Service(header string, need Rights) (Policy, error) {
	if header == "" {
		return Policy{}, unauthorized("Unauthorized: no Authorization header")
	}
	now := a.now()
	if vt := a.lookup(header, now); vt != nil {
		if p, ok := a.Policy(vt.tok.KeyName); ok && isPolicyKey(vt.key, p) {
			if !p.Rights.Has(need) {
				return Policy{}, unauthorized("Unauthorized: policy %q lacks %s", p.Name, need&^p.Rights)
			}
			return p, nil
		}
		// The policy's keys changed: verify again (and fail).
	}
	t, err := Parse(header)
	if err != nil {
		return Policy{}, unauthorized("Unauthorized: %v", err)
	}
	if t.KeyName == "" {
		return Policy{}, unauthorized("Unauthorized: the token names no shared access policy (skn)")
	}
	p, ok := a.Policy(t.KeyName)
	var key string
	if ok {
		key, ok = policyKey(t, p)
	}
	if !ok {
		return Policy{}, unauthorized("Unauthorized: signature does not match policy %q", t.KeyName)
	}
	if t.Expired(now) {
		return Policy{}, unauthorized("Unauthorized: the token expired at %s", time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
	a.remember(header, &verifiedToken{tok: t, key: key})
	if !p.Rights.Has(need) {
		return Policy{}, unauthorized("Unauthorized: policy %q lacks %s", p.Name, need&^p.Rights)
	}
	return p, nil
}

// Device authorizes a device or module connection. Without skn the token must
// be signed with one of the identity's keys; with skn it must be signed by a
// policy that grants DeviceConnect (the hub's "device" policy signs for any
// device). Its resource URI must cover "{host}/devices/{id}[/modules/{mid}]";
// Go's SDK signs the bare host, which covers everything.
func (a *Authenticator) Device(token, deviceID, moduleID, primaryKey, secondaryKey string) error {
	target := "host/devices/" + deviceID
	if moduleID != "" {
		target += "/modules/" + moduleID
	}
	now := a.now()
	if vt := a.lookup(token, now); vt != nil && a.stillDeviceKey(vt, primaryKey, secondaryKey) {
		if vt.covers == target || vt.tok.Covers(target) {
			return nil
		}
		return unauthorized("Unauthorized: token resource %q does not cover %q", vt.tok.Resource(), target)
	}
	t, err := Parse(token)
	if err != nil {
		return unauthorized("Unauthorized: %v", err)
	}
	if !t.Covers(target) {
		return unauthorized("Unauthorized: token resource %q does not cover %q", t.Resource(), target)
	}
	var key string
	if t.KeyName != "" {
		p, ok := a.Policy(t.KeyName)
		if ok {
			key, ok = policyKey(t, p)
		}
		if !ok {
			return unauthorized("Unauthorized: signature does not match policy %q", t.KeyName)
		}
		if !p.Rights.Has(DeviceConnect) {
			return unauthorized("Unauthorized: policy %q lacks DeviceConnect", p.Name)
		}
	} else {
		switch {
		case primaryKey != "" && t.VerifyKey(primaryKey):
			key = primaryKey
		case secondaryKey != "" && t.VerifyKey(secondaryKey):
			key = secondaryKey
		default:
			return unauthorized("Unauthorized: signature does not match the keys of %q", strings.TrimPrefix(target, "host/"))
		}
	}
	if t.Expired(now) {
		return unauthorized("Unauthorized: the token expired at %s", time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
	a.remember(token, &verifiedToken{tok: t, key: key, covers: target})
	return nil
}

// stillDeviceKey reports whether the key that verified vt may still sign
// for a device: one of the identity's keys now, or, for a token naming a
// policy, one of that policy's keys while it grants DeviceConnect.
func (a *Authenticator) stillDeviceKey(vt *verifiedToken, primaryKey, secondaryKey string) bool {
	if vt.tok.KeyName != "" {
		p, ok := a.Policy(vt.tok.KeyName)
		return ok && isPolicyKey(vt.key, p) && p.Rights.Has(DeviceConnect)
	}
	return vt.key != "" && (vt.key == primaryKey || vt.key == secondaryKey)
}
