package httpapi

import (
	"io"
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

func twinKey(r *http.Request) twins.Key {
	return twins.Key{DeviceID: pathVar(r, "id"), ModuleID: pathVar(r, "mid")}
}

func writeTwin(w http.ResponseWriter, t *twins.Twin) error {
	w.Header()["ETag"] = []string{`"` + wire.ETag(t.ETag) + `"`}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, err := w.Write(wire.TwinJSON(t))
	return err
}

func (s *Server) getTwin(w http.ResponseWriter, r *http.Request) error {
	t, err := s.Twins.Get(ctx(r), twinKey(r))
	if err != nil {
		return err
	}
	return writeTwin(w, t)
}

func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, iothub.Wrap(iothub.MessageTooLarge, err, "The request body could not be read or is too large.")
	}
	return body, nil
}

// patchTwin merges tags and desired properties (PATCH /twins/{id}).
func (s *Server) patchTwin(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	p, err := wire.DecodeTwinPatch(body)
	if err != nil {
		return err
	}
	t, err := s.Twins.PatchService(ctx(r), twinKey(r), r.Header.Get("If-Match"), p)
	if err != nil {
		return err
	}
	return writeTwin(w, t)
}

// replaceTwin replaces tags and desired properties (PUT /twins/{id}).
func (s *Server) replaceTwin(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	p, err := wire.DecodeTwinPatch(body)
	if err != nil {
		return err
	}
	t, err := s.Twins.ReplaceService(ctx(r), twinKey(r), r.Header.Get("If-Match"), p.Tags, p.Desired)
	if err != nil {
		return err
	}
	return writeTwin(w, t)
}
