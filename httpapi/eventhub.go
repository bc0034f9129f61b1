package httpapi

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// EventHubInfo is what GET /_emulator/eventhub returns: how to reach the
// Event Hub-compatible endpoint with the Event Hubs SDKs.
type EventHubInfo struct {
	Name                        string `json:"name"`
	PartitionCount              int    `json:"partitionCount"`
	ConnectionString            string `json:"connectionString"`
	DevelopmentConnectionString string `json:"developmentConnectionString,omitempty"`
}

// EventHubEndpoint is the Event Hub-compatible endpoint as the REST API sees it.
type EventHubEndpoint interface {
	Info() EventHubInfo
	ConsumerGroups() []string
	CreateConsumerGroup(ctx context.Context, name string) (created bool, err error)
}

func (s *Server) eventHub() (EventHubEndpoint, error) {
	if s.EventHub == nil {
		return nil, iothub.Errorf(iothub.GenericNotFound, "The Event Hub-compatible endpoint is disabled.")
	}
	return s.EventHub, nil
}

// getEventHub serves GET /_emulator/eventhub (emulator-only).
func (s *Server) getEventHub(w http.ResponseWriter, r *http.Request) error {
	eh, err := s.eventHub()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, eh.Info())
}

type consumerGroup struct {
	Name string `json:"name"`
}

// listConsumerGroups serves GET /_emulator/eventhub/consumergroups
// (emulator-only).
func (s *Server) listConsumerGroups(w http.ResponseWriter, r *http.Request) error {
	eh, err := s.eventHub()
	if err != nil {
		return err
	}
	out := []consumerGroup{}
	for _, g := range eh.ConsumerGroups() {
		out = append(out, consumerGroup{g})
	}
	return writeJSON(w, http.StatusOK, out)
}

// putConsumerGroup serves PUT /_emulator/eventhub/consumergroups/{name}
// (emulator-only): 201 when created, 200 when it existed.
func (s *Server) putConsumerGroup(w http.ResponseWriter, r *http.Request) error {
	eh, err := s.eventHub()
	if err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	created, err := eh.CreateConsumerGroup(r.Context(), name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, consumerGroup{name})
}
