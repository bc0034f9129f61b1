package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/digitaltwins"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

func setTwinETag(w http.ResponseWriter, etag int64) {
	w.Header()["ETag"] = []string{`"` + wire.ETag(etag) + `"`}
}

func (s *Server) getDigitalTwin(w http.ResponseWriter, r *http.Request) error {
	dt, etag, err := s.DigitalTwins.Get(ctx(r), pathVar(r, "id"))
	if err != nil {
		return err
	}
	setTwinETag(w, etag)
	return writeJSON(w, http.StatusOK, dt)
}

// patch applies a JSON Patch; the hub answers 202 with the new etag.
func (s *Server) patchDigitalTwin(w http.ResponseWriter, r *http.Request) error {
	var ops []digitaltwins.Op
	if err := readJSON(r, &ops); err != nil {
		return err
	}
	etag, err := s.DigitalTwins.Update(ctx(r), pathVar(r, "id"), r.Header.Get("If-Match"), ops)
	if err != nil {
		return err
	}
	setTwinETag(w, etag)
	w.Header().Set("Location", r.URL.Path)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// command invokes a command as a direct method. The answer is the device's
// payload as the body and its status in x-ms-command-statuscode.
func (s *Server) invokeDigitalTwinCommand(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(body) > 0 && !json.Valid(body) {
		return iothub.Errorf(iothub.ArgumentInvalid, "The command payload is not valid JSON.")
	}
	timeout := func(name string) (int, error) {
		v := r.URL.Query().Get(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, iothub.Errorf(iothub.ArgumentInvalid, "%s must be an integer, got '%s'.", name, v)
		}
		return n, nil
	}
	connect, err := timeout("connectTimeoutInSeconds")
	if err != nil {
		return err
	}
	response, err := timeout("responseTimeoutInSeconds")
	if err != nil {
		return err
	}
	// A command is a direct method to the hub's throttles.
	if err := s.cfg.Throttle.AllowDirectMethod(len(body)); err != nil {
		return err
	}
	resp, err := s.DigitalTwins.Invoke(ctx(r), digitaltwins.Command{
		DeviceID: pathVar(r, "id"), Component: pathVar(r, "component"), Name: pathVar(r, "command"),
		Payload: body, ConnectTimeout: seconds(connect), ResponseTimeout: seconds(response),
	})
	if err != nil {
		return err
	}
	w.Header().Set("x-ms-command-statuscode", strconv.Itoa(resp.Status))
	w.Header().Set("x-ms-request-id", uuid.NewString())
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(resp.Payload)
	return err
}
