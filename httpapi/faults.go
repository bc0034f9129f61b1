package httpapi

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/faults"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Emulator-only: /_emulator/faults (inject faults) and /_emulator/clock
// (read, and under --fake-clock move, the hub's clock). Not part of the
// hub's API.

// FaultJSON is a fault as /_emulator/faults takes and lists it.
type FaultJSON struct {
	ID                string  `json:"id,omitempty"`
	Action            string  `json:"action"`
	DeviceID          string  `json:"deviceId,omitempty"`
	ModuleID          string  `json:"moduleId,omitempty"`
	Route             string  `json:"route,omitempty"`
	Operation         string  `json:"operation,omitempty"`
	CloseReason       string  `json:"closeReason,omitempty"`
	ErrorCode         int     `json:"errorCode,omitempty"`
	ErrorName         string  `json:"errorName,omitempty"`
	Count             int     `json:"count,omitempty"`
	DelayInSeconds    float64 `json:"delayInSeconds,omitempty"`
	DurationInSeconds float64 `json:"durationInSeconds,omitempty"`
	Source            string  `json:"source,omitempty"`
	CreatedTimeUTC    string  `json:"createdTimeUtc,omitempty"`
	StartTimeUTC      string  `json:"startTimeUtc,omitempty"`
	ExpiryTimeUTC     string  `json:"expiryTimeUtc,omitempty"`
	Hits              int     `json:"hits"`
}

func faultJSON(f faults.Fault) FaultJSON {
	out := FaultJSON{ID: f.ID, Action: string(f.Action), DeviceID: f.DeviceID, ModuleID: f.ModuleID, Route: f.Route,
		Operation: f.Operation, CloseReason: f.Reason,
		Count: f.Count, DelayInSeconds: f.Delay.Seconds(), DurationInSeconds: f.Duration.Seconds(), Source: f.Source,
		CreatedTimeUTC: hubTime(f.CreatedAt), StartTimeUTC: hubTime(f.StartsAt), ExpiryTimeUTC: hubTime(f.ExpiresAt), Hits: f.Hits}
	if f.ErrorCode != 0 {
		out.ErrorCode, out.ErrorName = int(f.ErrorCode), f.ErrorCode.Name()
	}
	return out
}

func faultSeconds(name string, v float64) (time.Duration, error) {
	if v < 0 || v > 7*24*3600 || math.IsNaN(v) {
		return 0, iothub.Errorf(iothub.ArgumentInvalid, "%s must be between 0 and 604800.", name)
	}
	return time.Duration(v * float64(time.Second)), nil
}

func (s *Server) listFaults(w http.ResponseWriter, r *http.Request) error {
	list := s.Faults.List()
	out := make([]FaultJSON, len(list))
	for i, f := range list {
		out[i] = faultJSON(f)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) createFault(w http.ResponseWriter, r *http.Request) error {
	var req FaultJSON
	if err := readJSON(r, &req); err != nil {
		return err
	}
	delay, err := faultSeconds("delayInSeconds", req.DelayInSeconds)
	if err != nil {
		return err
	}
	duration, err := faultSeconds("durationInSeconds", req.DurationInSeconds)
	if err != nil {
		return err
	}
	if req.Route != "" && !s.knownRoute(req.Route) {
		return iothub.Errorf(iothub.ArgumentInvalid, "route %q is none of the hub's routes; use \"METHOD /path/{template}\" as GET /_emulator/faults/routes lists them.", req.Route)
	}
	f, err := s.Faults.Create(faults.Fault{Action: faults.Action(req.Action), DeviceID: req.DeviceID, ModuleID: req.ModuleID,
		Route: req.Route, Operation: req.Operation, Reason: req.CloseReason, ErrorCode: iothub.Code(req.ErrorCode), Count: req.Count,
		Delay: delay, Duration: duration})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, faultJSON(f))
}

func (s *Server) deleteFault(w http.ResponseWriter, r *http.Request) error {
	if err := s.Faults.Delete(pathVar(r, "id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) clearFaults(w http.ResponseWriter, r *http.Request) error {
	s.Faults.Clear()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// faultRoutes lists the route names Error faults accept.
func (s *Server) faultRoutes(w http.ResponseWriter, r *http.Request) error {
	var out []string
	for _, rt := range s.routes() {
		if faultable(rt) {
			out = append(out, rt.method+" "+rt.path)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) knownRoute(name string) bool {
	for _, rt := range s.routes() {
		if faultable(rt) && rt.method+" "+rt.path == name {
			return true
		}
	}
	return false
}

// faultable reports whether a route belongs to the hub's API (injected
// errors never touch the emulator's own endpoints).
func faultable(rt route) bool {
	return rt.method != anyMethod && !strings.HasPrefix(rt.path, "/_emulator/")
}

// withFaults answers a hub route with the error an injected fault holds
// for it, if any.
func (s *Server) withFaults(rt route, next http.Handler) http.Handler {
	if s.Faults == nil || !faultable(rt) {
		return next
	}
	name := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Faults.CallError(name, pathVar(r, "id")); err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ClockJSON is the hub's time as /_emulator/clock shows it.
type ClockJSON struct {
	Now  string `json:"now"`
	Fake bool   `json:"fake"`
}

// ClockAdvanceJSON moves the fake clock: by advanceSeconds, or to a later
// time (RFC 3339).
type ClockAdvanceJSON struct {
	AdvanceSeconds float64 `json:"advanceSeconds"`
	To             string  `json:"to"`
}

func (s *Server) getClock(w http.ResponseWriter, r *http.Request) error {
	now := clock.OrReal(s.cfg.Clock).Now()
	return writeJSON(w, http.StatusOK, ClockJSON{Now: hubTime(now), Fake: s.cfg.FakeClock != nil})
}

func (s *Server) advanceClock(w http.ResponseWriter, r *http.Request) error {
	f := s.cfg.FakeClock
	if f == nil {
		return iothub.Errorf(iothub.GenericMethodNotAllowed, "The clock can only be moved when the emulator runs with --fake-clock.")
	}
	var req ClockAdvanceJSON
	if err := readJSON(r, &req); err != nil {
		return err
	}
	switch {
	case req.To != "":
		t, err := time.Parse(time.RFC3339Nano, req.To)
		if err != nil {
			return iothub.Errorf(iothub.ArgumentInvalid, "to must be an RFC 3339 time, not %q.", req.To)
		}
		if t.Before(f.Now()) {
			return iothub.Errorf(iothub.ArgumentInvalid, "The clock never goes back: %s is before %s.", req.To, hubTime(f.Now()))
		}
		f.Set(t)
	default:
		d, err := faultSeconds("advanceSeconds", req.AdvanceSeconds)
		if err != nil {
			return err
		}
		f.Advance(d)
	}
	return writeJSON(w, http.StatusOK, ClockJSON{Now: hubTime(f.Now()), Fake: true})
}
