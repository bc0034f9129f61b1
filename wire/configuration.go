package wire

import (
	"encoding/json"

	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// ConfigurationContent is the content member of a configuration and the
// body of POST /devices/{id}/applyConfigurationContent. Absent sections are
// left out, as the hub echoes content exactly as it was given.
type ConfigurationContent struct {
	DeviceContent  map[string]any `json:"deviceContent,omitempty"`
	ModulesContent map[string]any `json:"modulesContent,omitempty"`
	ModuleContent  map[string]any `json:"moduleContent,omitempty"`
}

// ConfigurationMetrics is the systemMetrics and metrics member.
type ConfigurationMetrics struct {
	Results map[string]int64  `json:"results"`
	Queries map[string]string `json:"queries"`
}

// Configuration is the hub's configuration document.
type Configuration struct {
	ID                 string               `json:"id"`
	SchemaVersion      string               `json:"schemaVersion"`
	Labels             map[string]string    `json:"labels"`
	Content            ConfigurationContent `json:"content"`
	ContentType        string               `json:"contentType,omitempty"`
	TargetCondition    string               `json:"targetCondition"`
	CreatedTimeUtc     string               `json:"createdTimeUtc"`
	LastUpdatedTimeUtc string               `json:"lastUpdatedTimeUtc"`
	Priority           int                  `json:"priority"`
	SystemMetrics      ConfigurationMetrics `json:"systemMetrics"`
	Metrics            ConfigurationMetrics `json:"metrics"`
	ETag               string               `json:"etag"`
}

// configurationIn is what a client may send; server-set members are ignored.
type configurationIn struct {
	ID              string                `json:"id"`
	SchemaVersion   string                `json:"schemaVersion"`
	Labels          map[string]string     `json:"labels"`
	Content         *ConfigurationContent `json:"content"`
	TargetCondition string                `json:"targetCondition"`
	Priority        *int                  `json:"priority"`
	Metrics         *struct {
		Queries map[string]string `json:"queries"`
	} `json:"metrics"`
}

// DecodeConfiguration reads a PUT /configurations/{id} body. An id in the
// body must match pathID when both are present.
func DecodeConfiguration(body []byte, pathID string) (*configurations.Configuration, error) {
	var in configurationIn
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The configuration is not valid JSON: %v", err)
	}
	if in.ID != "" && in.ID != pathID {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The configuration id '%s' in the body does not match '%s' in the path.", in.ID, pathID)
	}
	c := &configurations.Configuration{ID: pathID, SchemaVersion: in.SchemaVersion, Labels: in.Labels, TargetCondition: in.TargetCondition}
	if in.Content != nil {
		c.Content = configurations.Content(*in.Content)
	}
	if in.Priority != nil {
		c.Priority = *in.Priority
	}
	if in.Metrics != nil {
		c.MetricQueries = in.Metrics.Queries
	}
	return c, nil
}

// DecodeConfigurationContent reads an applyConfigurationContent body.
func DecodeConfigurationContent(body []byte) (configurations.Content, error) {
	var in ConfigurationContent
	if err := json.Unmarshal(body, &in); err != nil {
		return configurations.Content{}, iothub.Errorf(iothub.ArgumentInvalid, "The configuration content is not valid JSON: %v", err)
	}
	return configurations.Content(in), nil
}

// ConfigurationJSON renders a configuration as the hub does.
func ConfigurationJSON(c *configurations.Configuration) *Configuration {
	labels := c.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	queries := c.MetricQueries
	if queries == nil {
		queries = map[string]string{}
	}
	results := map[string]int64{}
	for name := range queries {
		results[name] = c.MetricResults[name]
	}
	system := map[string]int64{configurations.MetricTargeted: 0, configurations.MetricApplied: 0}
	for k, v := range c.SystemResults {
		system[k] = v
	}
	return &Configuration{
		ID: c.ID, SchemaVersion: c.SchemaVersion, Labels: labels,
		Content:         ConfigurationContent(c.Content),
		ContentType:     "assignment",
		TargetCondition: c.TargetCondition,
		CreatedTimeUtc:  twins.FormatTime(c.CreatedTime), LastUpdatedTimeUtc: twins.FormatTime(c.LastUpdatedTime),
		Priority:      c.Priority,
		SystemMetrics: ConfigurationMetrics{Results: system, Queries: c.SystemQueries()},
		Metrics:       ConfigurationMetrics{Results: results, Queries: queries},
		ETag:          configurations.FormatETag(c.ETag),
	}
}
