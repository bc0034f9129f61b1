package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/iothub-emulator/iothub-emulator/simdevices"
)

// Simulations runs simulated devices (the simdevices package).
type Simulations interface {
	Start(ctx context.Context, spec simdevices.Spec, origin string) (simdevices.Status, error)
	Stop(ctx context.Context, id string) error
	List() []simdevices.Status
	Get(id string) (simdevices.Status, error)
}

// listSimulations is GET /_emulator/simulations.
func (s *Server) listSimulations(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.Simulations.List())
}

// startSimulation is POST /_emulator/simulations: 201 with its status.
func (s *Server) startSimulation(w http.ResponseWriter, r *http.Request) error {
	var spec simdevices.Spec
	if err := readJSON(r, &spec); err != nil {
		return err
	}
	st, err := s.Simulations.Start(ctx(r), spec, simdevices.OriginAPI)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, st)
}

// getSimulation is GET /_emulator/simulations/{id}, with its devices.
func (s *Server) getSimulation(w http.ResponseWriter, r *http.Request) error {
	st, err := s.Simulations.Get(pathVar(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// stopSimulationTimeout bounds how long a stop waits for the devices to
// disconnect.
const stopSimulationTimeout = 10 * time.Second

// stopSimulation is DELETE /_emulator/simulations/{id}: 204.
func (s *Server) stopSimulation(w http.ResponseWriter, r *http.Request) error {
	c, cancel := context.WithTimeout(ctx(r), stopSimulationTimeout)
	defer cancel()
	if err := s.Simulations.Stop(c, pathVar(r, "id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
