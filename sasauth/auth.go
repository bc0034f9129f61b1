package sasauth

import (
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Authenticator checks tokens against the hub's policies and device keys.
type Authenticator struct {
	Policies []Policy
	// Now is the clock used for expiry; time.Now when nil.
	Now func() time.Time
}

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

// Service authorizes a service-side call from its Authorization header value.
// The token must name a policy (skn), be signed with one of its keys, be
// unexpired, and the policy must grant need. Returns 401002
// IotHubUnauthorizedAccess otherwise.
func (a *Authenticator) Service(header string, need Rights) (Policy, error) {
	if header == "" {
		return Policy{}, unauthorized("Unauthorized: no Authorization header")
	}
	t, err := Parse(header)
	if err != nil {
		return Policy{}, unauthorized("Unauthorized: %v", err)
	}
	if t.KeyName == "" {
		return Policy{}, unauthorized("Unauthorized: the token names no shared access policy (skn)")
	}
	p, ok := a.Policy(t.KeyName)
	if !ok || !(t.VerifyKey(p.PrimaryKey) || t.VerifyKey(p.SecondaryKey)) {
		return Policy{}, unauthorized("Unauthorized: signature does not match policy %q", t.KeyName)
	}
	if t.Expired(a.now()) {
		return Policy{}, unauthorized("Unauthorized: the token expired at %s", time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
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
	t, err := Parse(token)
	if err != nil {
		return unauthorized("Unauthorized: %v", err)
	}
	target := "host/devices/" + deviceID
	if moduleID != "" {
		target += "/modules/" + moduleID
	}
	if !t.Covers(target) {
		return unauthorized("Unauthorized: token resource %q does not cover %q", t.Resource(), target)
	}
	if t.KeyName != "" {
		p, ok := a.Policy(t.KeyName)
		if !ok || !(t.VerifyKey(p.PrimaryKey) || t.VerifyKey(p.SecondaryKey)) {
			return unauthorized("Unauthorized: signature does not match policy %q", t.KeyName)
		}
		if !p.Rights.Has(DeviceConnect) {
			return unauthorized("Unauthorized: policy %q lacks DeviceConnect", p.Name)
		}
	} else if !((primaryKey != "" && t.VerifyKey(primaryKey)) || (secondaryKey != "" && t.VerifyKey(secondaryKey))) {
		return unauthorized("Unauthorized: signature does not match the keys of %q", strings.TrimPrefix(target, "host/"))
	}
	if t.Expired(a.now()) {
		return unauthorized("Unauthorized: the token expired at %s", time.Unix(t.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
