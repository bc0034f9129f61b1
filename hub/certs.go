package hub

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// certSet is the hub's TLS material: the server certificate and the PEM of
// the CA that clients must trust.
type certSet struct {
	server tls.Certificate
	caPEM  []byte
}

// loadOrCreateCerts returns the server certificate for names. With a dir it
// reuses <dir>/ca.pem and its key across starts (so clients keep trusting
// the same CA) and re-issues the server certificate when names change;
// without one everything lives in memory.
func loadOrCreateCerts(dir string, names []string, now time.Time) (*certSet, error) {
	var caCert *x509.Certificate
	var caKey *ecdsa.PrivateKey
	var caPEM []byte
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		c, k, p, err := readPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
		if err == nil && c.NotAfter.After(now.Add(24*time.Hour)) {
			caCert, caKey, caPEM = c, k, p
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read the CA in %s: %w (delete it to generate a new one)", dir, err)
		}
	}
	if caCert == nil {
		var err error
		caCert, caKey, caPEM, err = newCA(now)
		if err != nil {
			return nil, err
		}
		if dir != "" {
			if err := writePair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), caPEM, caKey); err != nil {
				return nil, err
			}
			// A new CA invalidates any server certificate signed by the old one.
			_ = os.Remove(filepath.Join(dir, "server.pem"))
		}
	}
	if dir != "" {
		c, k, _, err := readPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
		if err == nil && covers(c, names) && c.CheckSignatureFrom(caCert) == nil && c.NotAfter.After(now.Add(24*time.Hour)) {
			return &certSet{server: tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}, caPEM: caPEM}, nil
		}
	}
	leaf, key, leafPEM, err := newServerCert(caCert, caKey, names, now)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if err := writePair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"), leafPEM, key); err != nil {
			return nil, err
		}
	}
	return &certSet{server: tls.Certificate{Certificate: [][]byte{leaf.Raw, caCert.Raw}, PrivateKey: key, Leaf: leaf}, caPEM: caPEM}, nil
}

func covers(c *x509.Certificate, names []string) bool {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	return true
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
}

// newCA makes an ECDSA P-256 CA: fast to generate (start-up stays well under
// 200 ms) and accepted by every SDK's TLS stack, TLS 1.2 included.
func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "IoT Hub Emulator Local CA", Organization: []string{"iothub-emulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	c, key, err := issue(tmpl, nil, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), nil
}

func newServerCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: names[0], Organization: []string{"iothub-emulator"}},
		NotBefore: now.Add(-time.Hour),
		// Under 398 days, the limit some TLS clients enforce on leaf lifetimes.
		NotAfter:    now.AddDate(0, 0, 397),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	c, key, err := issue(tmpl, ca, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
	return c, key, chain, nil
}

// issue makes a new P-256 key and a certificate for it from tmpl, signed by
// parent (self-signed when parent is nil).
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func readPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, nil, errors.New("not PEM")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, nil, err
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, k, certPEM, nil
}

func writePair(certFile, keyFile string, certPEM []byte, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, certPEM, 0o644)
}

// userCerts loads --tls-cert/--tls-key; the CA served to clients is the
// last certificate of the chain file (or the leaf itself).
func userCerts(certFile, keyFile string) (*certSet, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
	}
	last := c.Certificate[len(c.Certificate)-1]
	return &certSet{server: c, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: last})}, nil
}
