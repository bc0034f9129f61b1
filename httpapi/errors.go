package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// trackingID mimics the hub's "Tracking ID:<32 hex>-G:<n>-TimeStamp:<..>";
// the Go SDK wants a non-empty ExceptionMessage (digest §3.1).
func trackingID(now time.Time) string {
	id := uuid.New()
	return fmt.Sprintf("Tracking ID:%x-G:0-TimeStamp:%s", id[:], now.Format("01/02/2006 15:04:05"))
}

// methodErrorCodes use the hub's second error body form, with a JSON
// document inside Message (digest §7.1, Format B).
var methodErrorCodes = map[iothub.Code]bool{iothub.DeviceNotOnline: true, iothub.GatewayTimeout: true, iothub.InvalidResponseWhileProxying: true}

// writeError is the one place where an error becomes an HTTP response: the
// status is the code's, the body the hub's {"Message","ExceptionMessage"}
// form, and the iothub-errorcode header names the code.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := iothub.CodeOf(err)
	if code == iothub.ServerError && s.cfg.Unavailable != nil && s.cfg.Unavailable(err) {
		s.log.Error("storage unavailable", "method", r.Method, "path", r.URL.EscapedPath(), "error", err)
		err = iothub.Errorf(iothub.ServiceUnavailable, "The IoT hub is temporarily unavailable: its storage is failing (disk full?). Retry later.")
		code = iothub.ServiceUnavailable
	}
	msg := iothub.MessageOf(err)
	if code == iothub.ServerError {
		s.log.Error("internal error", "method", r.Method, "path", r.URL.EscapedPath(), "error", err)
	} else {
		s.log.Info("request failed", "method", r.Method, "path", r.URL.EscapedPath(), "code", int(code), "error", msg)
	}
	now := clock.OrReal(s.cfg.Clock).Now().UTC()
	var body any
	if methodErrorCodes[code] {
		info := map[string]any{}
		var e *iothub.Error
		if errors.As(err, &e) && e.Info != nil {
			info = e.Info
		}
		inner, _ := json.Marshal(map[string]any{
			"errorCode": int(code), "trackingId": trackingID(now), "message": msg,
			"info": info, "timestampUtc": now.Format("2006-01-02T15:04:05.0000000Z"),
		})
		body = map[string]string{"Message": string(inner), "ExceptionMessage": ""}
	} else {
		body = map[string]string{
			"Message":          "ErrorCode:" + code.Name() + ";" + msg,
			"ExceptionMessage": trackingID(now),
		}
	}
	// Lower-case header names as the hub writes them; net/http would
	// canonicalise them through Header.Set (digest §3.0).
	w.Header()["iothub-errorcode"] = []string{code.Name()}
	_ = writeJSON(w, code.Status(), body)
}
