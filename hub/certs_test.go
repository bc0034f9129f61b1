package hub

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestCerts_ReusedAndReissued(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	first, err := loadOrCreateCerts(dir, []string{"localhost", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	again, err := loadOrCreateCerts(dir, []string{"localhost", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.caPEM) != string(first.caPEM) || again.server.Leaf.SerialNumber.Cmp(first.server.Leaf.SerialNumber) != 0 {
		t.Error("a second start did not reuse the CA and server certificate")
	}
	more, err := loadOrCreateCerts(dir, []string{"hub.example", "localhost", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if string(more.caPEM) != string(first.caPEM) {
		t.Error("a new host name replaced the CA; clients would stop trusting the hub")
	}
	if more.server.Leaf.SerialNumber.Cmp(first.server.Leaf.SerialNumber) == 0 {
		t.Fatal("the server certificate was not re-issued for the new name")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(more.caPEM)
	for _, name := range []string{"hub.example", "localhost", "127.0.0.1"} {
		if _, err := more.server.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !more.server.Leaf.NotAfter.Before(now.AddDate(0, 0, 398)) {
		t.Error("leaf lifetime exceeds 397 days")
	}
}
