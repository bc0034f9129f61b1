package amqp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/amqp"
)

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The engine runs on any net.Conn: here a TLS connection, whose state the handler can read, with
// frames traced.
func TestServeConnOverTLSWithTrace(t *testing.T) {
	var trace bytes.Buffer
	var traceMu sync.Mutex
	tlsStates := make(chan bool, 1)
	h := &testHandler{connected: func(c *amqp.Conn) error { tlsStates <- c.TLS() != nil; return nil }}
	srv := amqp.NewServer(h, amqp.Config{Trace: amqp.TraceTo(lockedWriter{&trace, &traceMu})})
	defer srv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(context.Background(), c)
		}
	}()
	ctx := testCtx(t)
	c, err := goamqp.Dial(ctx, "amqps://"+ln.Addr().String(), &goamqp.ConnOptions{SASLType: goamqp.SASLTypePlain("user", "s3cret-key"),
		TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !<-tlsStates {
		t.Fatal("Conn.TLS() is nil on a TLS connection")
	}
	if _, err := c.NewSession(ctx, nil); err != nil {
		t.Fatal(err)
	}
	traceMu.Lock()
	got := trace.String()
	traceMu.Unlock()
	for _, want := range []string{"amqp <- ch=0 saslInit{Mechanism:PLAIN", "amqp <- ch=0 open{ContainerID:", "amqp -> ch=0 begin{RemoteChannel:0 "} {
		if !strings.Contains(got, want) {
			t.Errorf("trace lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "s3cret") || strings.Contains(got, fmtBytes("s3cret")) {
		t.Errorf("trace shows the SASL password:\n%s", got)
	}
}

func fmtBytes(s string) string { return strings.Trim(fmt.Sprint([]byte(s)), "[]") }

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
