package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
)

// The Device Provisioning Service shares the hub's MQTT listeners: a client
// whose username is "{idScope}/registrations/{registrationId}/api-version=…"
// is a device registering with DPS, not a hub device. It may only subscribe
// to $dps/registrations/res/# and publish register and operation-status
// requests; the hub's topics are closed to it, and its topics to hub devices.

// Provisioning is what the broker needs from the Device Provisioning Service.
type Provisioning interface {
	Authenticate(ctx context.Context, c provisioning.Credentials) error
	Register(ctx context.Context, c provisioning.Credentials, payload json.RawMessage) (*provisioning.Operation, error)
	OperationStatus(ctx context.Context, c provisioning.Credentials, operationID string) (*provisioning.Operation, error)
	RetryAfter() time.Duration
}

const (
	dpsResponseFilter = "$dps/registrations/res/#"
	dpsRegisterPrefix = "$dps/registrations/PUT/iotdps-register/?"
	dpsStatusPrefix   = "$dps/registrations/GET/iotdps-get-operationstatus/?"
	// dpsClientPrefix keeps DPS client ids (registration ids) apart from
	// hub device ids, which cannot contain ':': a device registering and
	// the same device connected to the hub must not take each other over.
	dpsClientPrefix = "$dps:"
)

// dpsUsername reads "{idScope}/registrations/{registrationId}/api-version=…"
// whose registration id is the client id. A hub username names the client
// id right after the host instead, so a device or module called
// "registrations" is not mistaken for a DPS client.
func dpsUsername(username, clientID string) (idScope, registrationID string, ok bool) {
	parts := strings.SplitN(username, "/", 4)
	if len(parts) < 3 || parts[0] == "" || parts[1] != "registrations" || parts[2] != clientID || clientID == "" {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// connectDPS authenticates a registering device: the registration id must be
// the client id, and the password a SAS token signed with its enrollment's
// (or group-derived) key, or the TLS client certificate an enrollment names.
func (h *hook) connectDPS(cl *mqtt.Client, pk packets.Packet, idScope, regID string) error {
	refuse := func(reason any) error {
		h.b.log.Info("dps connection refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", reason)
		_ = h.b.srv.SendConnack(cl, packets.ErrBadUsernameOrPassword, false, nil)
		return errRefused
	}
	creds := provisioning.Credentials{IDScope: idScope, RegistrationID: regID, SASToken: string(pk.Connect.Password)}
	if creds.SASToken == "" {
		if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
			creds.Certificates = tc.ConnectionState().PeerCertificates
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.b.cfg.Provisioning.Authenticate(ctx, creds); err != nil {
		return refuse(err)
	}
	creds.Attested = true
	cl.ID = dpsClientPrefix + regID
	c := &conn{cl: cl, dps: &creds, dev: Device{DeviceID: dpsClientPrefix + regID}} // dev names it in logs only
	h.b.register(c)
	return nil
}

// dpsConn returns the DPS registration of a live DPS connection.
func (h *hook) dpsConn(cl *mqtt.Client) (*conn, bool) {
	c, ok := h.b.currentConn(cl)
	if !ok || c.dps == nil {
		return nil, false
	}
	return c, true
}

func dpsMayPublish(topic string) bool {
	return strings.HasPrefix(topic, dpsRegisterPrefix) || strings.HasPrefix(topic, dpsStatusPrefix)
}

func dpsMaySubscribe(filter string) bool { return filter == dpsResponseFilter }

// dpsPublish answers a register or operation-status request on
// $dps/registrations/res/{status}/?$rid=…, with retry-after while the
// operation is "assigning". Only a failure to store leaves the request
// unacknowledged.
func (h *hook) dpsPublish(c *conn, pk packets.Packet) (packets.Packet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var query string
	register := strings.HasPrefix(pk.TopicName, dpsRegisterPrefix)
	if register {
		query = strings.TrimPrefix(pk.TopicName, dpsRegisterPrefix)
	} else {
		query = strings.TrimPrefix(pk.TopicName, dpsStatusPrefix)
	}
	params, _ := url.ParseQuery(query)
	rid := params.Get("$rid")
	var op *provisioning.Operation
	var err error
	if register {
		var body struct {
			RegistrationID string          `json:"registrationId"`
			Payload        json.RawMessage `json:"payload"`
		}
		if len(strings.TrimSpace(string(pk.Payload))) > 0 {
			if jerr := json.Unmarshal(pk.Payload, &body); jerr != nil {
				err = iothub.Errorf(iothub.ArgumentInvalid, "The request body is not valid JSON: %v", jerr)
			}
		}
		if err == nil && body.RegistrationID != "" && body.RegistrationID != c.dps.RegistrationID {
			err = iothub.Errorf(iothub.ArgumentInvalid, "The registration id in the body is not the connection's.")
		}
		if err == nil {
			op, err = h.b.cfg.Provisioning.Register(ctx, *c.dps, body.Payload)
		}
	} else {
		op, err = h.b.cfg.Provisioning.OperationStatus(ctx, *c.dps, params.Get("operationId"))
	}
	status, topicQuery, payload := 200, "?$rid="+url.QueryEscape(rid), []byte(nil)
	var he *iothub.Error
	switch {
	case err == nil:
		if op.Status == provisioning.RegistrationAssigning {
			status = 202
			topicQuery += "&retry-after=" + strconv.Itoa(int((h.b.cfg.Provisioning.RetryAfter()+time.Second-1)/time.Second))
		}
		payload, _ = json.Marshal(op)
	case errors.As(err, &he):
		status, payload = he.Code.Status(), h.b.errorBody(err)
	default:
		h.b.log.Error("dps request not stored", "registration", c.dps.RegistrationID, "error", err)
		return pk, packets.ErrRejectPacket
	}
	// Through the connection's outbox, like every hub answer: the read
	// loop never waits on the device's socket.
	_ = h.b.send(c, outPacket{pk: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   "$dps/registrations/res/" + strconv.Itoa(status) + "/" + topicQuery,
		Payload:     payload,
	}})
	return pk, packets.CodeSuccessIgnore
}
