package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/iothub-emulator/iothub-emulator/methods"
)

// MethodInvoker runs direct methods; *methods.Invoker is one.
type MethodInvoker interface {
	Invoke(ctx context.Context, req methods.Request) (methods.Response, error)
}

// invokeRequest is the body of POST /twins/{id}/methods (digest §3.5). Node
// sends every member, Python sends "payload":"" for no payload, Go omits
// zero members; encoding/json matches names case-insensitively.
type invokeRequest struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload"`
	ResponseTimeoutInSeconds int             `json:"responseTimeoutInSeconds"`
	ConnectTimeoutInSeconds  int             `json:"connectTimeoutInSeconds"`
}

// seconds converts a timeout without overflowing: anything beyond a day is
// out of the hub's bounds anyway and is reported as such by methods.Validate.
func seconds(n int) time.Duration {
	const day = 86400
	if n > day {
		n = day
	}
	if n < -1 {
		n = -1
	}
	return time.Duration(n) * time.Second
}

// invokeMethod is the handler of POST /twins/{id}/methods and
// POST /twins/{id}/modules/{mid}/methods. It answers 200
// {"status":<device status>,"payload":<device JSON>} whatever status the
// device chose; failures go through writeError (404103, 504101 and 502101 in
// the hub's Format B body).
func (s *Server) invokeMethod(w http.ResponseWriter, r *http.Request) error {
	var in invokeRequest
	if err := readJSON(r, &in); err != nil {
		return err
	}
	if err := s.cfg.Throttle.AllowDirectMethod(len(in.Payload)); err != nil {
		return err
	}
	resp, err := s.Methods.Invoke(ctx(r), methods.Request{
		DeviceID:        pathVar(r, "id"),
		ModuleID:        pathVar(r, "mid"),
		MethodName:      in.MethodName,
		Payload:         in.Payload,
		ResponseTimeout: seconds(in.ResponseTimeoutInSeconds),
		ConnectTimeout:  seconds(in.ConnectTimeoutInSeconds),
	})
	if err != nil {
		return err
	}
	// The device's payload is valid JSON already (methods checks it);
	// splice it in rather than decode and re-encode it.
	body := make([]byte, 0, len(resp.Payload)+32)
	body = append(body, `{"status":`...)
	body = strconv.AppendInt(body, int64(resp.Status), 10)
	body = append(body, `,"payload":`...)
	body = append(body, resp.Payload...)
	body = append(body, '}')
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body)
	return err
}
