package registry

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// The rules every device transport (MQTT, AMQP) applies when a device or
// module connects; a refusal is 401003 IotHubUnauthorizedAccess, which the
// transports turn into their "not authorized" answer.

// Getter reads an identity.
type Getter interface {
	Get(ctx context.Context, deviceID, moduleID string) (*Identity, error)
}

func refusal(format string, args ...any) error {
	return iothub.Errorf(iothub.IotHubUnauthorizedAccess, format, args...)
}

// Connectable returns the identity a device or module connects as: it must
// exist and be enabled, and a module's device must be enabled too (a
// disabled device takes its modules with it).
func Connectable(ctx context.Context, ids Getter, deviceID, moduleID string) (*Identity, error) {
	id, err := ids.Get(ctx, deviceID, moduleID)
	if err != nil {
		return nil, err
	}
	if id.Status != StatusEnabled {
		path := deviceID
		if moduleID != "" {
			path += "/" + moduleID
		}
		return nil, refusal("%s is disabled", path)
	}
	if moduleID != "" {
		parent, err := ids.Get(ctx, deviceID, "")
		if err != nil {
			return nil, err
		}
		if parent.Status != StatusEnabled {
			return nil, refusal("device %s is disabled", deviceID)
		}
	}
	return id, nil
}

// VerifyCertificate checks an X.509 identity's TLS client certificate chain
// (leaf first): by thumbprint for selfSigned, by chain to a registered CA
// (with the device id, or "device/module", as subject CN) for
// certificateAuthority.
func VerifyCertificate(id *Identity, certs []*x509.Certificate, deviceCAs *x509.CertPool) error {
	if len(certs) == 0 {
		return refusal("no password and no TLS client certificate")
	}
	leaf := certs[0]
	switch id.Auth.Type {
	case AuthSelfSigned:
		s1 := sha1.Sum(leaf.Raw)
		s256 := sha256.Sum256(leaf.Raw)
		for _, tp := range []string{id.Auth.PrimaryThumbprint, id.Auth.SecondaryThumbprint} {
			if tp != "" && (strings.EqualFold(tp, hex.EncodeToString(s1[:])) || strings.EqualFold(tp, hex.EncodeToString(s256[:]))) {
				return nil
			}
		}
		return refusal("certificate thumbprint does not match the device's")
	case AuthCertificateAuthority:
		if deviceCAs == nil {
			return refusal("no device CA is registered (--device-ca)")
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: deviceCAs, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageAny}}); err != nil {
			return refusal("certificate chain: %v", err)
		}
		want := id.DeviceID
		if id.ModuleID != "" {
			want += "/" + id.ModuleID
		}
		if leaf.Subject.CommonName != want {
			return refusal("certificate CN %q is not %q", leaf.Subject.CommonName, want)
		}
		return nil
	}
	return refusal("authentication type %q needs a SAS token", id.Auth.Type)
}
