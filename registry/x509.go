package registry

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// VerifyCertificate checks an X.509 identity's TLS client certificate chain
// (leaf first, as TLS presents it), whichever transport it came over: by
// thumbprint (SHA-1 or SHA-256) for selfSigned, by a chain to one of
// deviceCAs with the device id (or "device/module") as subject CN for
// certificateAuthority. SAS identities always fail: they need a token.
func VerifyCertificate(id *Identity, chain []*x509.Certificate, deviceCAs *x509.CertPool) error {
	if len(chain) == 0 {
		return errors.New("no SAS token and no TLS client certificate")
	}
	leaf := chain[0]
	switch id.Auth.Type {
	case AuthSelfSigned:
		s1 := sha1.Sum(leaf.Raw)
		s256 := sha256.Sum256(leaf.Raw)
		for _, tp := range []string{id.Auth.PrimaryThumbprint, id.Auth.SecondaryThumbprint} {
			if tp != "" && (strings.EqualFold(tp, hex.EncodeToString(s1[:])) || strings.EqualFold(tp, hex.EncodeToString(s256[:]))) {
				return nil
			}
		}
		return errors.New("certificate thumbprint does not match the device's")
	case AuthCertificateAuthority:
		if deviceCAs == nil {
			return errors.New("no device CA is registered (--device-ca)")
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: deviceCAs, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("certificate chain: %w", err)
		}
		want := id.DeviceID
		if id.ModuleID != "" {
			want += "/" + id.ModuleID
		}
		if leaf.Subject.CommonName != want {
			return fmt.Errorf("certificate CN %q is not %q", leaf.Subject.CommonName, want)
		}
		return nil
	}
	return fmt.Errorf("authentication type %q needs a SAS token", id.Auth.Type)
}
