package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// pathVar returns a decoded path variable; the router matches encoded paths
// so an id holding %2F stays one segment.
func pathVar(r *http.Request, name string) string {
	v := mux.Vars(r)[name]
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}

func setETag(w http.ResponseWriter, etag string) {
	w.Header()["ETag"] = []string{`"` + etag + `"`}
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	top, _ := strconv.Atoi(r.URL.Query().Get("top"))
	ids, err := s.Registry.List(ctx(r), top)
	if err != nil {
		return err
	}
	out := make([]*wire.Device, len(ids))
	for i, id := range ids {
		out[i] = wire.FromDevice(id)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) error {
	id, err := s.Registry.Get(ctx(r), pathVar(r, "id"), "")
	if err != nil {
		return err
	}
	setETag(w, registry.ETagString(id.ETag))
	return writeJSON(w, http.StatusOK, wire.FromDevice(id))
}

// putDevice creates or updates a device (see putIdentity).
func (s *Server) putDevice(w http.ResponseWriter, r *http.Request) error {
	var in wire.IdentityIn
	if err := readJSON(r, &in); err != nil {
		return err
	}
	deviceID := pathVar(r, "id")
	if in.DeviceID != "" && in.DeviceID != deviceID {
		return iothub.Errorf(iothub.ArgumentInvalid, "The deviceId in the body (%s) does not match the one in the path (%s).", in.DeviceID, deviceID)
	}
	in.DeviceID = deviceID
	in.ModuleID = ""
	id, err := s.putIdentity(r, &in)
	if err != nil {
		return err
	}
	setETag(w, registry.ETagString(id.ETag))
	return writeJSON(w, http.StatusOK, wire.FromDevice(id))
}

// putIdentity creates the identity, or updates it when If-Match is present:
// the hub's create-only semantics without If-Match. Creates answer 200, as
// the hub does (Python breaks on 201).
func (s *Server) putIdentity(r *http.Request, in *wire.IdentityIn) (*registry.Identity, error) {
	if ifMatch := r.Header.Get("If-Match"); ifMatch != "" {
		return s.Registry.Update(ctx(r), ifMatch, in.ToIdentity())
	}
	return s.Registry.Create(ctx(r), in.ToIdentity())
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	if err := s.Registry.Delete(ctx(r), pathVar(r, "id"), "", r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listModules(w http.ResponseWriter, r *http.Request) error {
	ids, err := s.Registry.ListModules(ctx(r), pathVar(r, "id"))
	if err != nil {
		return err
	}
	out := make([]*wire.Module, len(ids))
	for i, id := range ids {
		out[i] = wire.FromModule(id)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getModule(w http.ResponseWriter, r *http.Request) error {
	id, err := s.Registry.Get(ctx(r), pathVar(r, "id"), pathVar(r, "mid"))
	if err != nil {
		return err
	}
	setETag(w, registry.ETagString(id.ETag))
	return writeJSON(w, http.StatusOK, wire.FromModule(id))
}

func (s *Server) putModule(w http.ResponseWriter, r *http.Request) error {
	var in wire.IdentityIn
	if err := readJSON(r, &in); err != nil {
		return err
	}
	deviceID, moduleID := pathVar(r, "id"), pathVar(r, "mid")
	if (in.DeviceID != "" && in.DeviceID != deviceID) || (in.ModuleID != "" && in.ModuleID != moduleID) {
		return iothub.Errorf(iothub.ArgumentInvalid, "The deviceId and moduleId in the body must match the path.")
	}
	in.DeviceID, in.ModuleID = deviceID, moduleID
	id, err := s.putIdentity(r, &in)
	if err != nil {
		return err
	}
	setETag(w, registry.ETagString(id.ETag))
	return writeJSON(w, http.StatusOK, wire.FromModule(id))
}

func (s *Server) deleteModule(w http.ResponseWriter, r *http.Request) error {
	if err := s.Registry.Delete(ctx(r), pathVar(r, "id"), pathVar(r, "mid"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deviceStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.Registry.Stats(ctx(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]int{
		"totalDeviceCount": st.Total, "enabledDeviceCount": st.Enabled, "disabledDeviceCount": st.Disabled,
	})
}

func (s *Server) serviceStats(w http.ResponseWriter, r *http.Request) error {
	n, err := s.Registry.ConnectedCount(ctx(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]int{"connectedDeviceCount": n})
}
