package amqp

import (
	"context"
	"strings"
	"sync"
	"time"
)

// RequestNode serves a request/response node such as $cbs or $management on one connection:
// requests arrive on links where the peer sends (AddRequestLink) and each reply leaves on a link
// where the peer receives (AddReplyLink), chosen by the request's reply-to:
//  1. the reply link whose target address equals reply-to;
//  2. else the reply link whose name equals reply-to;
//  3. else the only reply link of the node (clients disagree on what reply-to holds).
//
// The reply's correlation-id is the request's message-id (same AMQP type) unless the serve
// function set one, and its to is the request's reply-to.
type RequestNode struct {
	serve   ServeRequest
	timeout time.Duration

	mu      sync.Mutex
	replies []*Link
}

// ServeRequest answers one request; a nil reply sends nothing. It runs on the request link's
// goroutine, so requests on one link are answered in order.
type ServeRequest func(ctx context.Context, req *Message) (reply *Message)

// NewRequestNode returns a node answering requests with serve. Sending a reply waits at most
// replyTimeout for credit (default 30 s when zero).
func NewRequestNode(serve ServeRequest, replyTimeout time.Duration) *RequestNode {
	if replyTimeout <= 0 {
		replyTimeout = 30 * time.Second
	}
	return &RequestNode{serve: serve, timeout: replyTimeout}
}

// AddReplyLink registers a RoleSender link of the node; it is forgotten when it ends.
func (n *RequestNode) AddReplyLink(l *Link) {
	n.mu.Lock()
	n.replies = append(n.replies, l)
	n.mu.Unlock()
	go func() {
		<-l.Done()
		n.mu.Lock()
		defer n.mu.Unlock()
		for i, r := range n.replies {
			if r == l {
				n.replies = append(n.replies[:i], n.replies[i+1:]...)
				break
			}
		}
	}()
}

// AddRequestLink serves the requests of a RoleReceiver link on a goroutine of its own until the
// link ends. Each request is accepted once answered.
func (n *RequestNode) AddRequestLink(l *Link) {
	go func() {
		ctx := l.Conn().Context()
		for {
			d, err := l.Receive(ctx)
			if err != nil {
				return
			}
			n.handle(ctx, d)
		}
	}()
}

func (n *RequestNode) handle(ctx context.Context, d *Delivery) {
	req := d.Message
	reply := n.serve(ctx, req)
	d.Accept()
	if reply == nil {
		return
	}
	replyTo := ""
	var msgID any
	if req.Properties != nil {
		replyTo, msgID = req.Properties.ReplyTo, req.Properties.MessageID
	}
	if reply.Properties == nil {
		reply.Properties = &Properties{}
	}
	if reply.Properties.CorrelationID == nil {
		reply.Properties.CorrelationID = msgID
	}
	if reply.Properties.To == "" {
		reply.Properties.To = replyTo
	}
	link := n.replyLink(replyTo)
	if link == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	link.SendSettled(sctx, reply)
}

func (n *RequestNode) replyLink(replyTo string) *Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	// A link that has ended may still be listed (its watcher has not run
	// yet) while a new one with the same address replaces it, as a client
	// re-attaching its reply link does: only live links count.
	live := make([]*Link, 0, len(n.replies))
	for _, l := range n.replies {
		select {
		case <-l.Done():
		default:
			live = append(live, l)
		}
	}
	for _, l := range live {
		if t := l.Target(); t != nil && t.Address != "" && t.Address == replyTo {
			return l
		}
	}
	for _, l := range live {
		if l.Name() == replyTo {
			return l
		}
	}
	for _, l := range live {
		if t := l.Target(); t != nil && strings.EqualFold(t.Address, replyTo) {
			return l
		}
	}
	if len(live) == 1 {
		return live[0]
	}
	return nil
}
