package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
)

// The Device Provisioning Service's HTTPS API, served beside the hub's:
// the device API (/{idScope}/registrations/…) and the service API
// (/enrollments, /enrollmentGroups, /registrations). Its errors have DPS's
// own body, {"errorCode","trackingId","message","timestampUtc"}, written by
// writeDPSError only.

// writeDPSError turns an error into a DPS error response.
func (s *Server) writeDPSError(w http.ResponseWriter, r *http.Request, err error) {
	code := iothub.CodeOf(err)
	msg := iothub.MessageOf(err)
	if code == iothub.ServerError {
		s.log.Error("internal error", "method", r.Method, "path", r.URL.EscapedPath(), "error", err)
	} else {
		s.log.Info("dps request failed", "method", r.Method, "path", r.URL.EscapedPath(), "code", int(code), "error", msg)
	}
	_ = writeJSON(w, code.Status(), map[string]any{
		"errorCode": int(code), "trackingId": uuid.NewString(), "message": msg,
		"timestampUtc": s.now().UTC().Format("2006-01-02T15:04:05.0000000Z"),
	})
}

// dpsService wraps a handler of the provisioning service API: a SAS token
// of the provisioningserviceowner policy.
func (s *Server) dpsService(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.ProvisioningAuth.Service(r.Header.Get("Authorization"), 0); err != nil {
			s.writeDPSError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r); err != nil {
			s.writeDPSError(w, r, err)
		}
	})
}

// dpsDevice wraps a handler of the DPS device API; the handler attests the
// device itself (provisioning.Credentials).
func (s *Server) dpsDevice(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r); err != nil {
			s.writeDPSError(w, r, err)
		}
	})
}

func dpsCredentials(r *http.Request) provisioning.Credentials {
	v := mux.Vars(r)
	c := provisioning.Credentials{IDScope: v["idScope"], RegistrationID: v["registrationId"], SASToken: r.Header.Get("Authorization")}
	if r.TLS != nil && c.SASToken == "" {
		c.Certificates = r.TLS.PeerCertificates
	}
	return c
}

// writeOperation answers a register or status request: 202 with retry-after
// while assigning, 200 with the registration state after.
func (s *Server) writeOperation(w http.ResponseWriter, op *provisioning.Operation) error {
	status := http.StatusOK
	if op.Status == provisioning.RegistrationAssigning {
		status = http.StatusAccepted
		secs := int((s.Provisioning.RetryAfter() + time.Second - 1) / time.Second)
		w.Header()["retry-after"] = []string{strconv.Itoa(secs)}
	}
	return writeJSON(w, status, op)
}

// dpsRegister is PUT /{idScope}/registrations/{registrationId}/register.
func (s *Server) dpsRegister(w http.ResponseWriter, r *http.Request) error {
	c := dpsCredentials(r)
	var body struct {
		RegistrationID string          `json:"registrationId"`
		Payload        json.RawMessage `json:"payload"`
	}
	if err := readJSON(r, &body); err != nil && iothub.CodeOf(err) != iothub.ArgumentNull {
		return err
	}
	if body.RegistrationID != "" && body.RegistrationID != c.RegistrationID {
		return iothub.Errorf(iothub.ArgumentInvalid, "The registration id in the body is not the one in the path.")
	}
	op, err := s.Provisioning.Register(ctx(r), c, body.Payload)
	if err != nil {
		return err
	}
	return s.writeOperation(w, op)
}

// dpsOperation is GET /{idScope}/registrations/{registrationId}/operations/{operationId}.
func (s *Server) dpsOperation(w http.ResponseWriter, r *http.Request) error {
	op, err := s.Provisioning.OperationStatus(ctx(r), dpsCredentials(r), mux.Vars(r)["operationId"])
	if err != nil {
		return err
	}
	return s.writeOperation(w, op)
}

func (s *Server) putEnrollment(w http.ResponseWriter, r *http.Request) error {
	var e provisioning.Enrollment
	if err := readJSON(r, &e); err != nil {
		return err
	}
	out, err := s.Provisioning.PutEnrollment(ctx(r), mux.Vars(r)["id"], r.Header.Get("If-Match"), &e)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, publicEnrollment(out))
}

func (s *Server) getEnrollment(w http.ResponseWriter, r *http.Request) error {
	e, err := s.Provisioning.GetEnrollment(ctx(r), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, publicEnrollment(e))
}

func (s *Server) deleteEnrollment(w http.ResponseWriter, r *http.Request) error {
	if err := s.Provisioning.DeleteEnrollment(ctx(r), mux.Vars(r)["id"], r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) enrollmentAttestation(w http.ResponseWriter, r *http.Request) error {
	e, err := s.Provisioning.GetEnrollment(ctx(r), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, e.Attestation.Public())
}

func (s *Server) bulkEnrollments(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Mode        string                     `json:"mode"`
		Enrollments []*provisioning.Enrollment `json:"enrollments"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	res, err := s.Provisioning.Bulk(ctx(r), body.Mode, body.Enrollments)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) putGroup(w http.ResponseWriter, r *http.Request) error {
	var g provisioning.EnrollmentGroup
	if err := readJSON(r, &g); err != nil {
		return err
	}
	out, err := s.Provisioning.PutGroup(ctx(r), mux.Vars(r)["id"], r.Header.Get("If-Match"), &g)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, publicGroup(out))
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.Provisioning.GetGroup(ctx(r), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, publicGroup(g))
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	if err := s.Provisioning.DeleteGroup(ctx(r), mux.Vars(r)["id"], r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) groupAttestation(w http.ResponseWriter, r *http.Request) error {
	g, err := s.Provisioning.GetGroup(ctx(r), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g.Attestation.Public())
}

func (s *Server) getRegistration(w http.ResponseWriter, r *http.Request) error {
	st, err := s.Provisioning.Registration(ctx(r), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) deleteRegistration(w http.ResponseWriter, r *http.Request) error {
	if err := s.Provisioning.DeleteRegistration(ctx(r), mux.Vars(r)["id"], r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// writeDPSPage answers a DPS query: one page of items, x-ms-continuation
// naming the next (an offset), x-ms-max-item-count choosing the page size.
func writeDPSPage[T any](w http.ResponseWriter, r *http.Request, items []T, itemType string) error {
	var spec struct {
		Query string `json:"query"`
	}
	if err := readJSON(r, &spec); err != nil && iothub.CodeOf(err) != iothub.ArgumentNull {
		return err
	}
	if q := strings.Join(strings.Fields(strings.ToLower(spec.Query)), " "); q != "" && q != "*" && !strings.HasPrefix(q, "select *") {
		return iothub.Errorf(iothub.ArgumentInvalid, "Only the query '*' (all) is supported, not '%s'.", spec.Query)
	}
	start := 0
	if c := r.Header.Get("x-ms-continuation"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			return iothub.Errorf(iothub.ArgumentInvalid, "Invalid continuation token '%s'.", c)
		}
		start = min(n, len(items))
	}
	size := len(items)
	if m := r.Header.Get("x-ms-max-item-count"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n <= 0 {
			return iothub.Errorf(iothub.ArgumentInvalid, "Invalid x-ms-max-item-count '%s'.", m)
		}
		size = n
	}
	end := min(start+size, len(items))
	if end < len(items) {
		w.Header()["x-ms-continuation"] = []string{strconv.Itoa(end)}
	}
	w.Header()["x-ms-item-type"] = []string{itemType}
	page := items[start:end]
	if page == nil {
		page = []T{}
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) queryEnrollments(w http.ResponseWriter, r *http.Request) error {
	list, err := s.Provisioning.Enrollments(ctx(r))
	if err != nil {
		return err
	}
	for i, e := range list {
		list[i] = publicEnrollment(e)
	}
	return writeDPSPage(w, r, list, "Enrollment")
}

func (s *Server) queryGroups(w http.ResponseWriter, r *http.Request) error {
	list, err := s.Provisioning.Groups(ctx(r))
	if err != nil {
		return err
	}
	for i, g := range list {
		list[i] = publicGroup(g)
	}
	return writeDPSPage(w, r, list, "EnrollmentGroup")
}

func (s *Server) queryGroupRegistrations(w http.ResponseWriter, r *http.Request) error {
	list, err := s.Provisioning.GroupRegistrations(ctx(r), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeDPSPage(w, r, list, "DeviceRegistration")
}

// dpsInfo is GET /_emulator/dps: what a device and a service need to talk
// to the emulator's DPS.
func (s *Server) dpsInfo(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{
		"idScope": s.Provisioning.IDScope(), "serviceConnectionString": s.cfg.DPSServiceConnectionString,
		"globalEndpoint": s.cfg.DPSGlobalEndpoint,
	})
}

// publicEnrollment and publicGroup show X.509 certificates by their info
// only, as DPS does.
func publicEnrollment(e *provisioning.Enrollment) *provisioning.Enrollment {
	out := *e
	out.Attestation = e.Attestation.Public()
	return &out
}

func publicGroup(g *provisioning.EnrollmentGroup) *provisioning.EnrollmentGroup {
	out := *g
	out.Attestation = g.Attestation.Public()
	return &out
}
