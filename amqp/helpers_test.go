package amqp_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/amqp"
)

// testHandler accepts every connection and hands each attached link to onAttach.
type testHandler struct {
	connected func(c *amqp.Conn) error
	onAttach  func(l *amqp.Link) error

	mu     sync.Mutex
	closed []error
	conns  []*amqp.Conn
}

func (h *testHandler) Connected(c *amqp.Conn) (amqp.ConnHandler, error) {
	if h.connected != nil {
		if err := h.connected(c); err != nil {
			return nil, err
		}
	}
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	return &testConn{h: h}, nil
}

type testConn struct{ h *testHandler }

func (c *testConn) Attach(l *amqp.Link) error {
	if c.h.onAttach == nil {
		return nil
	}
	return c.h.onAttach(l)
}

func (c *testConn) Closed(err error) {
	c.h.mu.Lock()
	c.h.closed = append(c.h.closed, err)
	c.h.mu.Unlock()
}

func (h *testHandler) lastConn() *amqp.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) == 0 {
		return nil
	}
	return h.conns[len(h.conns)-1]
}

// serve starts a server on a loopback port and returns its address.
func serve(t testing.TB, h amqp.Handler, cfg amqp.Config) (string, *amqp.Server) {
	t.Helper()
	srv := amqp.NewServer(h, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		srv.Close()
		wg.Wait()
	})
	return ln.Addr().String(), srv
}

func dial(t testing.TB, addr string, opts *goamqp.ConnOptions) *goamqp.Conn {
	t.Helper()
	if opts == nil {
		opts = &goamqp.ConnOptions{SASLType: goamqp.SASLTypeAnonymous()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := goamqp.Dial(ctx, "amqp://"+addr, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func session(t testing.TB, c *goamqp.Conn) *goamqp.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.NewSession(ctx, nil)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	return s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
