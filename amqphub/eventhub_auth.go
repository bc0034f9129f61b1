package amqphub

import (
	"crypto/hmac"
	"crypto/sha256"
	"strconv"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// checkEventHubToken authorizes a SAS token signed the Event Hubs way: the
// Event Hubs SDKs (and Service Bus) use the policy's key as written, its
// base64 text, as the HMAC key, where IoT Hub's SDKs decode it first. The
// Event Hub-compatible endpoint is an Event Hubs namespace, so tokens for it
// come in this form; the policy still needs ServiceConnect.
func (s *Server) checkEventHubToken(token string) (*grant, bool) {
	t, err := sasauth.Parse(token)
	if err != nil || t.KeyName == "" {
		return nil, false
	}
	p, ok := s.deps.Auth.Policy(t.KeyName)
	if !ok || !p.Rights.Has(sasauth.ServiceConnect) {
		return nil, false
	}
	signed := false
	for _, key := range []string{p.PrimaryKey, p.SecondaryKey} {
		if key == "" {
			continue
		}
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(t.ResourceURI + "\n" + strconv.FormatInt(t.Expiry, 10)))
		if hmac.Equal(mac.Sum(nil), t.Signature) {
			signed = true
		}
	}
	expiry := time.Unix(t.Expiry, 0)
	if !signed || !s.cfg.Now().Before(expiry) {
		return nil, false
	}
	return &grant{policy: p.Name, expiry: expiry}, true
}
