package amqp_test

import (
	"context"
	"errors"
	"log"
	"net"

	"github.com/iothub-emulator/iothub-emulator/amqp"
)

// echoHandler serves one node, "echo": what a client sends there is accepted and sent back to
// the client's receivers on the same node.
type echoHandler struct{}

func (echoHandler) Connected(c *amqp.Conn) (amqp.ConnHandler, error) {
	return &echoConn{out: make(chan *amqp.Message, 16)}, nil
}

type echoConn struct{ out chan *amqp.Message }

func (e *echoConn) Attach(l *amqp.Link) error {
	if l.Address() != "echo" {
		return amqp.Errorf(amqp.ErrCondNotFound, "no node %q", l.Address())
	}
	ctx := l.Conn().Context()
	if l.Role() == amqp.RoleReceiver { // the client sends
		go func() {
			for {
				d, err := l.Receive(ctx)
				if err != nil {
					return
				}
				select {
				case e.out <- d.Message:
					d.Accept()
				default:
					d.Reject(amqp.Errorf(amqp.ErrCondResourceLimitExceeded, "echo queue full"))
				}
			}
		}()
		return nil
	}
	go func() { // the client receives
		for m := range e.out {
			if _, err := l.Send(ctx, m); err != nil {
				return
			}
		}
	}()
	return nil
}

func (e *echoConn) Closed(err error) {}

// A server on a TCP listener with SASL PLAIN checked by an authenticator.
func ExampleServer() {
	srv := amqp.NewServer(echoHandler{}, amqp.Config{
		Authenticate: func(_ context.Context, req *amqp.SASLRequest) (any, error) {
			if req.Mechanism == amqp.MechanismPlain && req.Password != "secret" {
				return nil, errors.New("bad password")
			}
			return req.Username, nil
		},
	})
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
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
	// Clients connect to amqp://user:secret@<ln.Addr()> and attach to "echo".
}
