package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/simdevices"
)

// Simulations runs simulated devices (the simdevices package).
type Simulations interface {
	Start(ctx context.Context, spec simdevices.Spec, origin string) (simdevices.Status, error)
	Stop(ctx context.Context, id string) error
	List() []simdevices.Status
	Get(id string) (simdevices.Status, error)
}

// SimulationRoutes adds the emulator-only simulated-device endpoints.
// Starting one creates its devices and connects as them, so it needs
// RegistryWrite (a policy that can create a device can read its key).
func (s *Server) SimulationRoutes(sim Simulations) {
	s.EmulatorRoute("/_emulator/simulations", sasauth.RegistryRead, func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, sim.List())
	}, http.MethodGet)
	s.EmulatorRoute("/_emulator/simulations", sasauth.RegistryWrite, func(w http.ResponseWriter, r *http.Request) error {
		var spec simdevices.Spec
		if err := readJSON(r, &spec); err != nil {
			return err
		}
		st, err := sim.Start(ctx(r), spec, simdevices.OriginAPI)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, st)
	}, http.MethodPost)
	s.EmulatorRoute("/_emulator/simulations/{id}", sasauth.RegistryRead, func(w http.ResponseWriter, r *http.Request) error {
		st, err := sim.Get(pathVar(r, "id"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, st)
	}, http.MethodGet)
	s.EmulatorRoute("/_emulator/simulations/{id}", sasauth.RegistryWrite, func(w http.ResponseWriter, r *http.Request) error {
		c, cancel := context.WithTimeout(ctx(r), 10*time.Second)
		defer cancel()
		if err := sim.Stop(c, pathVar(r, "id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}, http.MethodDelete)
}
