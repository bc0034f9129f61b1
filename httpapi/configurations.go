package httpapi

import (
	"net/http"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

func (s *Server) getConfiguration(w http.ResponseWriter, r *http.Request) error {
	c, err := s.Configurations.Get(ctx(r), pathVar(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.ConfigurationJSON(c))
}

func (s *Server) listConfigurations(w http.ResponseWriter, r *http.Request) error {
	top := 0
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return iothub.Errorf(iothub.ArgumentInvalid, "top must be a non-negative integer, got '%s'.", v)
		}
		top = n
	}
	all, err := s.Configurations.List(ctx(r), top)
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
func (s *Server) putConfiguration(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	c, err := wire.DecodeConfiguration(body, pathVar(r, "id"))
	if err != nil {
		return err
	}
	out, _, err := s.Configurations.Put(ctx(r), c, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.ConfigurationJSON(out))
}

func (s *Server) deleteConfiguration(w http.ResponseWriter, r *http.Request) error {
	if err := s.Configurations.Delete(ctx(r), pathVar(r, "id"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) testConfigurationQueries(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		TargetCondition     string            `json:"targetCondition"`
		CustomMetricQueries map[string]string `json:"customMetricQueries"`
	}
	if err := readJSON(r, &in); err != nil {
		return err
	}
	targetErr, metricErrs := s.Configurations.TestQueries(in.TargetCondition, in.CustomMetricQueries)
	return writeJSON(w, http.StatusOK, map[string]any{"targetConditionError": targetErr, "customMetricQueryErrors": metricErrs})
}

func (s *Server) applyConfigurationContent(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	content, err := wire.DecodeConfigurationContent(body)
	if err != nil {
		return err
	}
	if err := s.Configurations.ApplyOnDevice(ctx(r), pathVar(r, "id"), content); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
