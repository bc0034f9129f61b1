package provisioning

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
)

// parseCertificate reads a certificate as the service API takes it: PEM, or
// base64 of DER (with or without PEM armour).
func parseCertificate(text string) (*x509.Certificate, error) {
	if b, _ := pem.Decode([]byte(text)); b != nil {
		return x509.ParseCertificate(b.Bytes)
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(text), ""))
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func thumbprints(c *x509.Certificate) (sha1Hex, sha256Hex string) {
	s1 := sha1.Sum(c.Raw)
	s256 := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(s1[:])), strings.ToUpper(hex.EncodeToString(s256[:]))
}

func certificateInfo(c *x509.Certificate) *X509CertificateInfo {
	t1, t256 := thumbprints(c)
	return &X509CertificateInfo{
		SubjectName: c.Subject.String(), IssuerName: c.Issuer.String(),
		SHA1Thumbprint: t1, SHA256Thumbprint: t256,
		NotBeforeUTC: c.NotBefore.UTC(), NotAfterUTC: c.NotAfter.UTC(),
		SerialNumber: strings.ToUpper(c.SerialNumber.Text(16)), Version: c.Version,
	}
}

// normalizeX509 checks the certificates of an X.509 attestation and fills
// in their info: client certificates for an individual enrollment, signing
// certificates for a group. CA references (certificates uploaded to the
// service separately) are not supported.
func normalizeX509(a *X509Attestation, group bool) error {
	if a == nil {
		return badRequest("An x509 attestation needs certificates.")
	}
	if len(a.CAReferences) > 0 && string(a.CAReferences) != "null" {
		return badRequest("CA references are not supported by the emulator; put the signing certificate in the enrollment group.")
	}
	set := a.ClientCertificates
	if group {
		set = a.SigningCertificates
		if a.ClientCertificates != nil {
			return badRequest("An enrollment group takes signing certificates, not client certificates.")
		}
	} else if a.SigningCertificates != nil {
		return badRequest("An individual enrollment takes client certificates, not signing certificates.")
	}
	if set == nil || set.Primary == nil {
		return badRequest("An x509 attestation needs a primary certificate.")
	}
	for _, c := range []*X509Certificate{set.Primary, set.Secondary} {
		if c == nil {
			continue
		}
		cert, err := parseCertificate(c.Certificate)
		if err != nil {
			return badRequest("The certificate cannot be parsed: %v", err)
		}
		c.Info = certificateInfo(cert)
	}
	return nil
}

// attestX509 matches a device's client certificate (chain) to an individual
// enrollment's certificate by thumbprint, or to a group whose signing
// certificate issued it; the registration id must be the certificate's CN.
func (s *Service) attestX509(ctx context.Context, c Credentials) (*attested, error) {
	leaf := c.Certificates[0]
	if leaf.Subject.CommonName != c.RegistrationID {
		return nil, unauthorized("Unauthorized: the certificate's CN '%s' is not the registration id '%s'.", leaf.Subject.CommonName, c.RegistrationID)
	}
	now := s.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, unauthorized("Unauthorized: the certificate is not valid now.")
	}
	t1, t256 := thumbprints(leaf)
	e, err := s.Store.GetEnrollment(ctx, c.RegistrationID)
	switch {
	case err == nil:
		if x := e.Attestation.X509; e.Attestation.Type == AttestationX509 && x != nil && x.ClientCertificates != nil {
			for _, cc := range []*X509Certificate{x.ClientCertificates.Primary, x.ClientCertificates.Secondary} {
				if cc != nil && cc.Info != nil && (cc.Info.SHA1Thumbprint == t1 || cc.Info.SHA256Thumbprint == t256) {
					return &attested{regID: c.RegistrationID, enrollment: e,
						auth: registry.Authentication{Type: registry.AuthSelfSigned, PrimaryThumbprint: t1, SecondaryThumbprint: t1}}, nil
				}
			}
		}
		return nil, unauthorized("Unauthorized: the certificate is not the enrollment's.")
	case iothub.CodeOf(err) != iothub.GenericNotFound:
		return nil, err
	}
	groups, err := s.Store.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, ic := range c.Certificates[1:] {
		inter.AddCert(ic)
	}
	for _, g := range groups {
		x := g.Attestation.X509
		if g.Attestation.Type != AttestationX509 || x == nil || x.SigningCertificates == nil {
			continue
		}
		roots := x509.NewCertPool()
		for _, sc := range []*X509Certificate{x.SigningCertificates.Primary, x.SigningCertificates.Secondary} {
			if sc == nil {
				continue
			}
			if cert, err := parseCertificate(sc.Certificate); err == nil {
				roots.AddCert(cert)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			// The device keeps its certificate; with the hub it is known
			// by thumbprint, so no device CA has to be registered there.
			return &attested{regID: c.RegistrationID, group: g,
				auth: registry.Authentication{Type: registry.AuthSelfSigned, PrimaryThumbprint: t1, SecondaryThumbprint: t1}}, nil
		}
	}
	return nil, unauthorized("Unauthorized: no enrollment matches the certificate of '%s'.", c.RegistrationID)
}

// Public returns the attestation as the service API shows it: DPS returns
// the info of X.509 certificates, never the certificates themselves.
func (a Attestation) Public() Attestation {
	if a.X509 == nil {
		return a
	}
	x := *a.X509
	strip := func(set *X509Certificates) *X509Certificates {
		if set == nil {
			return nil
		}
		out := &X509Certificates{}
		if set.Primary != nil {
			out.Primary = &X509Certificate{Info: set.Primary.Info}
		}
		if set.Secondary != nil {
			out.Secondary = &X509Certificate{Info: set.Secondary.Info}
		}
		return out
	}
	x.ClientCertificates, x.SigningCertificates = strip(x.ClientCertificates), strip(x.SigningCertificates)
	a.X509 = &x
	return a
}
