package httpapi

import (
	"net/http"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// AddConfigurationRoutes serves automatic device management: PUT, GET and
// DELETE /configurations/{id}, GET /configurations, POST
// /configurations/testQueries and POST /devices/{id}/applyConfigurationContent.
func (s *Server) AddConfigurationRoutes(svc *configurations.Service) {
	h := configurationRoutes{svc}
	s.Route("/configurations/testQueries", sasauth.RegistryRead, h.testQueries, http.MethodPost)
	s.Route("/configurations", sasauth.RegistryRead, h.list, http.MethodGet)
	s.Route("/configurations/", sasauth.RegistryRead, h.list, http.MethodGet)
	s.Route("/configurations/{id}", sasauth.RegistryRead, h.get, http.MethodGet)
	s.Route("/configurations/{id}", sasauth.RegistryWrite, h.put, http.MethodPut)
	s.Route("/configurations/{id}", sasauth.RegistryWrite, h.delete, http.MethodDelete)
	s.Route("/devices/{id}/applyConfigurationContent", sasauth.RegistryWrite, h.apply, http.MethodPost)
}

type configurationRoutes struct{ svc *configurations.Service }

func (h configurationRoutes) get(w http.ResponseWriter, r *http.Request) error {
	c, err := h.svc.Get(ctx(r), pathVar(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.ConfigurationJSON(c))
}

func (h configurationRoutes) list(w http.ResponseWriter, r *http.Request) error {
	top := 0
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return iothub.Errorf(iothub.ArgumentInvalid, "top must be a non-negative integer, got '%s'.", v)
		}
		top = n
	}
	all, err := h.svc.List(ctx(r), top)
	if err != nil {
		return err
	}
	out := make([]*wire.Configuration, len(all))
	for i, c := range all {
		out[i] = wire.ConfigurationJSON(c)
	}
	return writeJSON(w, http.StatusOK, out)
}

// put creates or, with If-Match, updates a configuration; the hub answers
// 200 to both.
func (h configurationRoutes) put(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	c, err := wire.DecodeConfiguration(body, pathVar(r, "id"))
	if err != nil {
		return err
	}
	out, _, err := h.svc.Put(ctx(r), c, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.ConfigurationJSON(out))
}

func (h configurationRoutes) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.Delete(ctx(r), pathVar(r, "id"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h configurationRoutes) testQueries(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		TargetCondition     string            `json:"targetCondition"`
		CustomMetricQueries map[string]string `json:"customMetricQueries"`
	}
	if err := readJSON(r, &in); err != nil {
		return err
	}
	targetErr, metricErrs := h.svc.TestQueries(in.TargetCondition, in.CustomMetricQueries)
	return writeJSON(w, http.StatusOK, map[string]any{"targetConditionError": targetErr, "customMetricQueryErrors": metricErrs})
}

func (h configurationRoutes) apply(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	content, err := wire.DecodeConfigurationContent(body)
	if err != nil {
		return err
	}
	if err := h.svc.ApplyOnDevice(ctx(r), pathVar(r, "id"), content); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
