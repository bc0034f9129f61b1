package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// emulator wraps an emulator-only handler: the same SAS authorization as
// the hub's routes, no api-version needed.
func (s *Server) emulator(need sasauth.Rights, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.Auth.Service(r.Header.Get("Authorization"), need); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := s.admitThrottled(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// deviceHandler serves a device API call for an authenticated identity.
type deviceHandler func(w http.ResponseWriter, r *http.Request, id *registry.Identity) error

// device wraps a device API handler: an api-version, and a SAS token signed
// with the identity's key (or a DeviceConnect policy) whose scope covers the
// device or module in the path. 401002 otherwise, also for an unknown or
// disabled identity, as the hub does not tell them apart.
func (s *Server) device(h deviceHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hasAPIVersion(r) {
			s.writeError(w, r, iothub.Errorf(iothub.InvalidProtocolVersion, "BadRequest"))
			return
		}
		deviceID, moduleID := pathVar(r, "id"), pathVar(r, "mid")
		id, err := s.Registry.Get(ctx(r), deviceID, moduleID)
		if err != nil {
			if iothub.CodeOf(err) == iothub.ServerError {
				s.writeError(w, r, err)
			} else {
				s.writeError(w, r, iothub.Errorf(iothub.IotHubUnauthorizedAccess, "Unauthorized"))
			}
			return
		}
		if err := s.authenticateDevice(r, id); err != nil {
			s.writeError(w, r, err)
			return
		}
		if id.Status != registry.StatusEnabled {
			s.writeError(w, r, iothub.Errorf(iothub.IotHubUnauthorizedAccess, "Unauthorized: the device is disabled"))
			return
		}
		if err := s.admitThrottled(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r, id); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authenticateDevice accepts a SAS token in Authorization, or, without one,
// the X.509 client certificate the device gave the HTTPS listener (the hub
// accepts both on its device API).
func (s *Server) authenticateDevice(r *http.Request, id *registry.Identity) error {
	if tok := r.Header.Get("Authorization"); tok != "" {
		return s.Auth.Device(tok, id.DeviceID, id.ModuleID, id.Auth.PrimaryKey, id.Auth.SecondaryKey)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return iothub.Errorf(iothub.IotHubUnauthorizedAccess, "Unauthorized: no Authorization header and no client certificate")
	}
	if err := registry.VerifyCertificate(id, r.TLS.PeerCertificates, s.cfg.DeviceCAs); err != nil {
		return iothub.Wrap(iothub.IotHubUnauthorizedAccess, err, "Unauthorized: the client certificate does not authenticate the device")
	}
	return nil
}

// batchContentType marks a batch of messages in one POST (digest §3.13).
const batchContentType = "application/vnd.microsoft.iothub.json"

// deviceSendEvent is POST /devices/{id}/messages/events: one message, its
// properties in iothub-* headers, or a JSON batch. 204 when stored.
func (s *Server) deviceSendEvent(w http.ResponseWriter, r *http.Request, id *registry.Identity) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return iothub.Errorf(iothub.MessageTooLarge, "Message size exceeds the limit of %d bytes.", messaging.MaxTelemetrySize)
		}
		return iothub.Wrap(iothub.ArgumentInvalid, err, "The request body could not be read.")
	}
	base := func() *messaging.Message {
		auth := "sas"
		if id.Auth.Type != registry.AuthSAS {
			auth = "x509"
		}
		return &messaging.Message{DeviceID: id.DeviceID, ModuleID: id.ModuleID, AuthMethod: auth, GenerationID: id.GenerationID, Transport: "https"}
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), batchContentType) {
		if len(body) > messaging.MaxTelemetrySize {
			return iothub.Errorf(iothub.MessageTooLarge, "Batch size %d bytes exceeds the limit of %d bytes.", len(body), messaging.MaxTelemetrySize)
		}
		var batch []struct {
			Body       []byte            `json:"body"`
			Properties map[string]string `json:"properties"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			return iothub.Errorf(iothub.ArgumentInvalid, "The batch is not a JSON array of {body, properties}: %v", err)
		}
		msgs := make([]*messaging.Message, len(batch))
		for i, b := range batch {
			m := base()
			m.Body = b.Body
			h := http.Header{}
			for k, v := range b.Properties {
				h.Set(k, v)
			}
			messageFromHeaders(m, h)
			msgs[i] = m
		}
		// Each message is acknowledged only once stored; one failure fails
		// the call, as the hub answers for the batch as a whole.
		errs := make(chan error, len(msgs))
		for _, m := range msgs {
			go func() { errs <- s.Telemetry.Send(ctx(r), m) }()
		}
		for range msgs {
			if e := <-errs; e != nil && err == nil {
				err = e
			}
		}
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	m := base()
	m.Body = body
	messageFromHeaders(m, r.Header)
	if err := s.Telemetry.Send(ctx(r), m); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// messageFromHeaders reads the HTTPS message headers (digest §3.13).
func messageFromHeaders(m *messaging.Message, h http.Header) {
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		lk := strings.ToLower(k)
		if name, ok := strings.CutPrefix(lk, "iothub-app-"); ok {
			// net/http canonicalises header names (Iothub-App-Color), so
			// the sender's case is lost; the SDKs send lower case.
			m.SetProperty(name, v)
			continue
		}
		if name, ok := headerSystemNames[lk]; ok {
			m.SetSystem(name, v)
		}
	}
}

// headerSystemNames maps the HTTPS message headers to the hub's system
// property names (digest §3.13).
var headerSystemNames = map[string]string{
	"iothub-messageid":       messaging.SysMessageID,
	"iothub-correlationid":   messaging.SysCorrelationID,
	"iothub-userid":          messaging.SysUserID,
	"iothub-to":              messaging.SysTo,
	"iothub-contenttype":     messaging.SysContentType,
	"iothub-contentencoding": messaging.SysContentEncoding,
	"iothub-expiry":          messaging.SysExpiryTime,
	"iothub-creationtimeutc": messaging.SysCreationTime,
	"iothub-messageschema":   "dt-dataschema",
	"iothub-interface-id":    "iothub-interface-id",
	"dt-subject":             "dt-subject",
}

// deviceReceive is GET /devices/{id}/messages/deviceBound: the next message
// with its lock token in ETag, 204 when the queue is empty.
func (s *Server) deviceReceive(w http.ResponseWriter, r *http.Request, id *registry.Identity) error {
	if id.ModuleID != "" {
		return iothub.Errorf(iothub.InvalidOperation, "Cloud-to-device messages are not available to modules.")
	}
	m, err := s.C2D.Receive(ctx(r), id.DeviceID)
	if err != nil {
		return err
	}
	if m == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	h := w.Header()
	// Lower-case names as the hub writes them (digest §3.0).
	set := func(k, v string) {
		if v != "" {
			h[k] = []string{v}
		}
	}
	h["ETag"] = []string{`"` + m.LockToken + `"`}
	set("iothub-messageid", m.MessageID)
	set("iothub-sequencenumber", strconv.FormatInt(m.SequenceNumber, 10))
	set("iothub-to", m.To)
	set("iothub-expiry", hubTime(m.ExpiryTime))
	set("iothub-enqueuedtime", hubTime(m.EnqueuedTime))
	set("iothub-deliverycount", strconv.Itoa(m.DeliveryCount))
	set("iothub-correlationid", m.CorrelationID)
	set("iothub-userid", m.UserID)
	set("iothub-ack", string(m.Ack))
	set("iothub-contenttype", m.ContentType)
	set("iothub-contentencoding", m.ContentEncoding)
	for k, v := range m.Properties {
		h["iothub-app-"+k] = []string{v}
	}
	ct := m.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(m.Body)
	return err
}

func hubTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

// lockToken reads the token from the path; the SDKs send the ETag without
// its quotes, but a quoted one is accepted too.
func lockToken(r *http.Request) string { return strings.Trim(pathVar(r, "lockToken"), `"`) }

// deviceSettle is DELETE …/deviceBound/{lockToken}: complete, or reject
// with ?reject. 204, or 412002 DeviceMessageLockLost.
func (s *Server) deviceSettle(w http.ResponseWriter, r *http.Request, id *registry.Identity) error {
	var err error
	if _, reject := r.URL.Query()["reject"]; reject {
		err = s.C2D.Reject(ctx(r), id.DeviceID, lockToken(r))
	} else {
		err = s.C2D.Complete(ctx(r), id.DeviceID, lockToken(r))
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deviceAbandon is POST …/deviceBound/{lockToken}/abandon.
func (s *Server) deviceAbandon(w http.ResponseWriter, r *http.Request, id *registry.Identity) error {
	if err := s.C2D.Abandon(ctx(r), id.DeviceID, lockToken(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// purgeCommands is the hub's DELETE /devices/{id}/commands (digest §3.12).
func (s *Server) purgeCommands(w http.ResponseWriter, r *http.Request) error {
	deviceID := pathVar(r, "id")
	n, err := s.C2D.Purge(ctx(r), deviceID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"totalMessagesPurged": n, "deviceId": deviceID, "moduleId": nil})
}

// MessageJSON is how the emulator's API shows a device-to-cloud message:
// the body, the application properties, and the system properties under the
// names an Event Hub consumer of the hub sees.
type MessageJSON struct {
	SequenceNumber   int64             `json:"sequenceNumber"`
	EnqueuedTimeUTC  string            `json:"enqueuedTimeUtc"`
	DeviceID         string            `json:"deviceId"`
	ModuleID         string            `json:"moduleId,omitempty"`
	Transport        string            `json:"transport,omitempty"`
	Body             string            `json:"body"`
	BodyEncoding     string            `json:"bodyEncoding"` // "utf-8" or "base64"
	Properties       map[string]string `json:"properties"`
	SystemProperties map[string]string `json:"systemProperties"`
}

func messageJSON(m *messaging.Message) *MessageJSON {
	out := &MessageJSON{SequenceNumber: m.SequenceNumber, EnqueuedTimeUTC: hubTime(m.EnqueuedTime), DeviceID: m.DeviceID,
		ModuleID: m.ModuleID, Transport: m.Transport, Properties: m.Properties, SystemProperties: map[string]string{}}
	if out.Properties == nil {
		out.Properties = map[string]string{}
	}
	if utf8.Valid(m.Body) {
		out.Body, out.BodyEncoding = string(m.Body), "utf-8"
	} else {
		out.Body, out.BodyEncoding = base64.StdEncoding.EncodeToString(m.Body), "base64"
	}
	sp := out.SystemProperties
	set := func(k, v string) {
		if v != "" {
			sp[k] = v
		}
	}
	set("message-id", m.MessageID)
	set("correlation-id", m.CorrelationID)
	set("user-id", m.UserID)
	set("to", m.To)
	set("content-type", m.ContentType)
	set("content-encoding", m.ContentEncoding)
	set("absolute-expiry-time", hubTime(m.ExpiryTime))
	set("iothub-creation-time-utc", hubTime(m.CreationTime))
	for k, v := range m.System {
		set(k, v)
	}
	set("iothub-connection-device-id", m.DeviceID)
	set("iothub-connection-module-id", m.ModuleID)
	set("iothub-connection-auth-generation-id", m.GenerationID)
	set("iothub-connection-auth-method", m.AuthMethodProperty())
	set("iothub-enqueuedtime", hubTime(m.EnqueuedTime))
	set("iothub-message-source", "Telemetry")
	set("x-opt-sequence-number", strconv.FormatInt(m.SequenceNumber, 10))
	return out
}

func messageFilter(r *http.Request) (messaging.Filter, error) {
	q := r.URL.Query()
	f := messaging.Filter{DeviceID: q.Get("deviceId"), ModuleID: q.Get("moduleId")}
	for name, dst := range map[string]*int64{"from": &f.From} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return f, iothub.Errorf(iothub.ArgumentInvalid, "%s must be a sequence number, not %q.", name, v)
			}
			*dst = n
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return f, iothub.Errorf(iothub.ArgumentInvalid, "limit must be a positive number, not %q.", v)
		}
		if n > messaging.MaxListLimit {
			return f, iothub.Errorf(iothub.ArgumentInvalid, "limit must be at most %d, not %d.", messaging.MaxListLimit, n)
		}
		f.Limit = n
	}
	return f, nil
}

// listMessages is GET /_emulator/messages?deviceId=&moduleId=&from=&limit=:
// messages from sequence number from on, or the most recent ones.
func (s *Server) listMessages(w http.ResponseWriter, r *http.Request) error {
	f, err := messageFilter(r)
	if err != nil {
		return err
	}
	msgs, err := s.Telemetry.List(ctx(r), f)
	if err != nil {
		return err
	}
	out := make([]*MessageJSON, len(msgs))
	for i, m := range msgs {
		out[i] = messageJSON(m)
	}
	return writeJSON(w, http.StatusOK, out)
}

// streamMessages is GET /_emulator/messages/stream: Server-Sent Events, one
// "message" event per stored message, its id the sequence number. With
// from (or Last-Event-ID on a reconnect) it first replays the log, then
// follows it without a gap; without, it follows from now.
func (s *Server) streamMessages(w http.ResponseWriter, r *http.Request) error {
	f, err := messageFilter(r)
	if err != nil {
		return err
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			f.From = n + 1
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": iothub-emulator telemetry stream\n\n")
	if err := rc.Flush(); err != nil {
		return nil
	}
	var last int64
	write := func(m *messaging.Message) error {
		b, err := json.Marshal(messageJSON(m))
		if err != nil {
			return err
		}
		last = m.SequenceNumber
		_, err = io.WriteString(w, "id: "+strconv.FormatInt(m.SequenceNumber, 10)+"\nevent: message\ndata: "+string(b)+"\n\n")
		return err
	}
	// replay writes the log from `from` on; the live feed is subscribed
	// first, so nothing stored meanwhile is missed.
	replay := func(from int64) error {
		for {
			page, err := s.Telemetry.List(ctx(r), messaging.Filter{DeviceID: f.DeviceID, ModuleID: f.ModuleID, From: from, Limit: 1000})
			if err != nil {
				return err
			}
			for _, m := range page {
				if err := write(m); err != nil {
					return err
				}
			}
			if len(page) < 1000 {
				return rc.Flush()
			}
			from = last + 1
		}
	}
	sub := s.Telemetry.Subscribe(f)
	defer func() { sub.Cancel() }()
	// The response has begun: an error can only end the stream, and is
	// logged (a reader that went away shows up here too).
	if f.From > 0 {
		if err := replay(f.From); err != nil {
			s.log.Warn("telemetry stream: replay failed", "from", f.From, "error", err)
			return nil
		}
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case m, ok := <-sub.C():
			if !ok {
				if !sub.Lagged() {
					return nil // the hub is closing
				}
				// Too slow for the live feed: catch up from the log.
				sub = s.Telemetry.Subscribe(f)
				if err := replay(last + 1); err != nil {
					s.log.Warn("telemetry stream: catching up after lagging failed", "from", last+1, "error", err)
					return nil
				}
				continue
			}
			if m.SequenceNumber <= last {
				continue
			}
			if err := write(m); err != nil {
				return nil
			}
			if len(sub.C()) == 0 {
				if err := rc.Flush(); err != nil {
					return nil
				}
			}
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		case <-r.Context().Done():
			return nil
		}
	}
}

// c2dRequest is the body of POST /_emulator/devices/{id}/messages/devicebound.
// body is text, or any other JSON value sent as its JSON text; bodyBase64
// carries binary bodies.
type c2dRequest struct {
	Body            json.RawMessage   `json:"body"`
	BodyBase64      []byte            `json:"bodyBase64"`
	Properties      map[string]string `json:"properties"`
	MessageID       string            `json:"messageId"`
	CorrelationID   string            `json:"correlationId"`
	UserID          string            `json:"userId"`
	To              string            `json:"to"`
	ContentType     string            `json:"contentType"`
	ContentEncoding string            `json:"contentEncoding"`
	ExpiryTimeUTC   string            `json:"expiryTimeUtc"`
	Ack             string            `json:"ack"`
}

// C2DJSON is how the emulator's API shows a queued C2D message.
type C2DJSON struct {
	SequenceNumber  int64             `json:"sequenceNumber"`
	DeviceID        string            `json:"deviceId"`
	MessageID       string            `json:"messageId"`
	To              string            `json:"to"`
	CorrelationID   string            `json:"correlationId,omitempty"`
	UserID          string            `json:"userId,omitempty"`
	ContentType     string            `json:"contentType,omitempty"`
	ContentEncoding string            `json:"contentEncoding,omitempty"`
	EnqueuedTimeUTC string            `json:"enqueuedTimeUtc"`
	ExpiryTimeUTC   string            `json:"expiryTimeUtc"`
	Ack             string            `json:"ack"`
	DeliveryCount   int               `json:"deliveryCount"`
	State           string            `json:"state"` // Enqueued or Invisible
	Properties      map[string]string `json:"properties"`
	Body            string            `json:"body,omitempty"`
	BodyEncoding    string            `json:"bodyEncoding,omitempty"`
}

// c2dJSON shows m as the emulator's C2D endpoints do; now (the hub's
// clock) tells a locked message (Invisible) from one whose lock expired.
func c2dJSON(m *messaging.C2DMessage, withBody bool, now time.Time) *C2DJSON {
	out := &C2DJSON{SequenceNumber: m.SequenceNumber, DeviceID: m.DeviceID, MessageID: m.MessageID, To: m.To, CorrelationID: m.CorrelationID,
		UserID: m.UserID, ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, EnqueuedTimeUTC: hubTime(m.EnqueuedTime),
		ExpiryTimeUTC: hubTime(m.ExpiryTime), Ack: string(m.Ack), DeliveryCount: m.DeliveryCount, State: "Enqueued", Properties: m.Properties}
	if m.LockToken != "" && m.LockedUntil.After(now) {
		out.State = "Invisible"
	}
	if out.Properties == nil {
		out.Properties = map[string]string{}
	}
	if withBody {
		if utf8.Valid(m.Body) {
			out.Body, out.BodyEncoding = string(m.Body), "utf-8"
		} else {
			out.Body, out.BodyEncoding = base64.StdEncoding.EncodeToString(m.Body), "base64"
		}
	}
	return out
}

// sendC2D enqueues a cloud-to-device message (the hub does this over AMQP
// only; this is the emulator's REST stand-in). 200 with the queued message.
func (s *Server) sendC2D(w http.ResponseWriter, r *http.Request) error {
	var req c2dRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	m := &messaging.C2DMessage{DeviceID: pathVar(r, "id"), MessageID: req.MessageID, To: req.To, CorrelationID: req.CorrelationID,
		UserID: req.UserID, ContentType: req.ContentType, ContentEncoding: req.ContentEncoding, Ack: messaging.Ack(strings.ToLower(req.Ack)),
		Properties: req.Properties}
	switch {
	case req.BodyBase64 != nil:
		m.Body = req.BodyBase64
	case len(req.Body) > 0 && req.Body[0] == '"':
		var text string
		if err := json.Unmarshal(req.Body, &text); err != nil {
			return iothub.Errorf(iothub.ArgumentInvalid, "body: %v", err)
		}
		m.Body = []byte(text)
	case len(req.Body) > 0 && string(req.Body) != "null":
		m.Body = req.Body
	}
	if req.ExpiryTimeUTC != "" {
		t, err := time.Parse(time.RFC3339Nano, req.ExpiryTimeUTC)
		if err != nil {
			return iothub.Errorf(iothub.ArgumentInvalid, "expiryTimeUtc must be an RFC 3339 time, not %q.", req.ExpiryTimeUTC)
		}
		m.ExpiryTime = t
	}
	if err := s.C2D.Send(ctx(r), m); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c2dJSON(m, false, s.now()))
}

// listC2D shows a device's queue (emulator only).
func (s *Server) listC2D(w http.ResponseWriter, r *http.Request) error {
	msgs, err := s.C2D.Pending(ctx(r), pathVar(r, "id"))
	if err != nil {
		return err
	}
	out := make([]*C2DJSON, len(msgs))
	now := s.now()
	for i, m := range msgs {
		out[i] = c2dJSON(m, true, now)
	}
	return writeJSON(w, http.StatusOK, out)
}

// FeedbackJSON is a feedback record as the hub writes it (digest §3.12),
// with the emulator's sequence number.
type FeedbackJSON struct {
	Sequence           int64  `json:"sequenceNumber"`
	OriginalMessageID  string `json:"originalMessageId"`
	EnqueuedTimeUTC    string `json:"enqueuedTimeUtc"`
	StatusCode         string `json:"statusCode"`
	Description        string `json:"description"`
	DeviceID           string `json:"deviceId"`
	DeviceGenerationID string `json:"deviceGenerationId"`
}

// listFeedback is GET /_emulator/feedback?deviceId=&from=.
func (s *Server) listFeedback(w http.ResponseWriter, r *http.Request) error {
	f, err := messageFilter(r)
	if err != nil {
		return err
	}
	fb, err := s.C2D.Feedback(ctx(r), messaging.FeedbackFilter{DeviceID: f.DeviceID, From: f.From, Limit: f.Limit})
	if err != nil {
		return err
	}
	out := make([]*FeedbackJSON, len(fb))
	for i, x := range fb {
		out[i] = &FeedbackJSON{Sequence: x.Sequence, OriginalMessageID: x.OriginalMessageID, EnqueuedTimeUTC: x.EnqueuedTime.UTC().Format(time.RFC3339Nano),
			StatusCode: x.StatusCode, Description: x.Description, DeviceID: x.DeviceID, DeviceGenerationID: x.DeviceGenerationID}
	}
	return writeJSON(w, http.StatusOK, out)
}
