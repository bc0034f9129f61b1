package amqphub

import (
	"context"
	"crypto/subtle"
	"fmt"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// grant is a ServiceConnect claim: a policy, until an expiry (zero: for the
// connection's life, as with PLAIN and a raw key).
type grant struct {
	policy string
	expiry time.Time
}

// connState is one connection's security state and service links.
type connState struct {
	srv  *Server
	conn *amqp.Conn
	cbs  *amqp.RequestNode
	mgmt *amqp.RequestNode // $management of the Event Hub endpoint, made on first use

	mu    sync.Mutex
	claim *grant // the latest-expiring claim; nil before any
	timer clock.Timer
	links map[*amqp.Link]struct{} // links of the protected nodes
	// devices are the device claims put on this connection, sessions the
	// devices' links (device.go).
	devices  map[devKey]*deviceClaim
	sessions map[devKey]*deviceSession
	// cbsLinks are the $cbs links attached now, for the fault service.
	cbsLinks map[*amqp.Link]struct{}
}

// authenticate decides SASL (amqp.Authenticator). MSSBCBS and ANONYMOUS
// carry no credentials: the client puts a token on $cbs next. PLAIN carries
// either a policy name and its key, or "{policy}@sas.root.{hub}" and a SAS
// token, both checked as REST checks an Authorization header.
func (s *Server) authenticate(_ context.Context, req *amqp.SASLRequest) (any, error) {
	switch req.Mechanism {
	case amqp.MechanismMSSBCBS, amqp.MechanismAnonymous:
		return nil, nil
	case amqp.MechanismPlain:
		if strings.HasPrefix(req.Password, "SharedAccessSignature ") {
			return s.checkToken(req.Password)
		}
		name, _, _ := strings.Cut(req.Username, "@")
		p, ok := s.deps.Auth.Policy(name)
		if !ok || !(keyEqual(req.Password, p.PrimaryKey) || keyEqual(req.Password, p.SecondaryKey)) {
			return nil, fmt.Errorf("no policy %q with that key", name)
		}
		if !p.Rights.Has(sasauth.ServiceConnect) {
			return nil, fmt.Errorf("policy %q lacks ServiceConnect", p.Name)
		}
		return &grant{policy: p.Name}, nil
	}
	return nil, fmt.Errorf("mechanism %s is not supported", req.Mechanism)
}

func keyEqual(given, key string) bool {
	return key != "" && subtle.ConstantTimeCompare([]byte(given), []byte(key)) == 1
}

// checkToken authorizes a SAS token for the service nodes, exactly as the
// REST API authorizes a request that needs ServiceConnect.
func (s *Server) checkToken(token string) (*grant, error) {
	p, err := s.deps.Auth.Service(token, sasauth.ServiceConnect)
	if err != nil {
		if g, ok := s.checkEventHubToken(token); ok {
			return g, nil
		}
		return nil, err
	}
	t, err := sasauth.Parse(token) // parsed fine above
	if err != nil {
		return nil, err
	}
	return &grant{policy: p.Name, expiry: time.Unix(t.Expiry, 0)}, nil
}

// CBS token types the SDKs send: Node, Go and Python's SAS form, the
// device SDKs' form, and uamqp's JWT auth class carrying a SAS token.
var cbsTokenTypes = map[string]bool{"servicebus.windows.net:sastoken": true, "azure-devices.net:sastoken": true, "jwt": true}

// serveCBS answers a put-token request on $cbs with status-code and
// status-description, as the hub does (200, 400 or 401); the engine sets
// the correlation-id.
func (cs *connState) serveCBS(_ context.Context, req *amqp.Message) *amqp.Message {
	status, desc := cs.putToken(req)
	if status != 200 {
		cs.srv.log.Info("CBS put-token refused", "remote", cs.conn.RemoteAddr(), "status", status, "reason", desc)
	}
	return &amqp.Message{ApplicationProperties: map[string]any{"status-code": int32(status), "status-description": desc}, HasValue: true}
}

func (cs *connState) putToken(req *amqp.Message) (int, string) {
	op, _ := req.ApplicationProperties["operation"].(string)
	if op != "put-token" {
		return 400, fmt.Sprintf("Unsupported CBS operation %q: only put-token is supported.", op)
	}
	typ, _ := req.ApplicationProperties["type"].(string)
	if !cbsTokenTypes[typ] {
		return 400, fmt.Sprintf("Unsupported token type %q.", typ)
	}
	var token string
	switch v := req.Value; {
	case req.HasValue:
		if s, ok := v.(string); ok {
			token = s
		} else if b, ok := v.([]byte); ok {
			token = string(b)
		}
	case len(req.Data) > 0:
		token = string(req.GetData())
	}
	if token == "" {
		return 400, "The put-token request carries no token."
	}
	name, _ := req.ApplicationProperties["name"].(string)
	if k, ok := isDeviceToken(token, name); ok {
		return cs.putDeviceToken(k, token)
	}
	g, err := cs.srv.checkToken(token)
	if err != nil {
		return 401, iothub.MessageOf(err)
	}
	cs.grant(g)
	return 200, "OK"
}

// grant records a claim; the connection keeps the one that lasts longest,
// and its service links close when that one expires.
func (cs *connState) grant(g *grant) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.claim != nil && (cs.claim.expiry.IsZero() || (!g.expiry.IsZero() && !g.expiry.After(cs.claim.expiry))) {
		return
	}
	cs.claim = g
	if cs.timer != nil {
		cs.timer.Stop()
		cs.timer = nil
	}
	if !g.expiry.IsZero() {
		cs.timer = cs.srv.cfg.Clock.AfterFunc(g.expiry.Sub(cs.srv.cfg.Now()), cs.expire)
	}
}

// authorize admits a link to a protected node while the connection holds a
// live claim, and tracks it so that the claim's expiry closes it.
func (cs *connState) authorize(l *amqp.Link) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.claim == nil {
		return amqp.Errorf(amqp.ErrCondUnauthorizedAccess, "Unauthorized: put a token with ServiceConnect on $cbs before attaching %s.", l.Address())
	}
	if !cs.claim.expiry.IsZero() && !cs.srv.cfg.Now().Before(cs.claim.expiry) {
		return amqp.Errorf(amqp.ErrCondUnauthorizedAccess, "Unauthorized: the token expired at %s.", cs.claim.expiry.UTC().Format(time.RFC3339))
	}
	cs.links[l] = struct{}{}
	go func() {
		<-l.Done()
		cs.mu.Lock()
		delete(cs.links, l)
		cs.mu.Unlock()
	}()
	return nil
}

// expire closes the protected links once the claim has lapsed without a
// renewal (a later put-token replaces the timer).
func (cs *connState) expire() {
	cs.mu.Lock()
	if cs.claim == nil || cs.claim.expiry.IsZero() || cs.srv.cfg.Now().Before(cs.claim.expiry) {
		cs.mu.Unlock()
		return
	}
	expiry := cs.claim.expiry
	links := make([]*amqp.Link, 0, len(cs.links))
	for l := range cs.links {
		links = append(links, l)
	}
	cs.mu.Unlock()
	for _, l := range links {
		l.Close(amqp.Errorf(amqp.ErrCondUnauthorizedAccess, "Unauthorized: the token expired at %s.", expiry.UTC().Format(time.RFC3339)))
	}
}
