package simdevices

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Spec declares a simulated device, or Count alike ones (ID-1 … ID-N). It is
// the JSON (and YAML) shape of a seed file's "simulations" entries and of
// POST /_emulator/simulations:
//
//	{"id": "thermostat", "count": 3,
//	 "telemetry": {"interval": "5s",
//	   "fields": {"temperature": {"min": 18, "max": 26, "walk": 0.3},
//	              "mode": {"values": ["eco", "comfort"]}},
//	   "properties": {"source": "simulator"}},
//	 "methods": [{"name": "lockDoor"}, {"name": "reboot", "status": 202, "delay": "2s"}],
//	 "echoDesired": true}
type Spec struct {
	ID          string     `json:"id" yaml:"id"`
	Count       int        `json:"count,omitempty" yaml:"count"`
	Telemetry   *Telemetry `json:"telemetry,omitempty" yaml:"telemetry"`
	Methods     []Method   `json:"methods,omitempty" yaml:"methods"`
	EchoDesired bool       `json:"echoDesired,omitempty" yaml:"echoDesired"`
}

// Telemetry is what a simulated device sends and how often.
type Telemetry struct {
	// Interval between messages, a Go duration ("1s", "500ms"); 10s when empty.
	Interval string `json:"interval,omitempty" yaml:"interval"`
	// Fields of the JSON body, by name.
	Fields map[string]Field `json:"fields,omitempty" yaml:"fields"`
	// Properties are the application properties of every message.
	Properties map[string]string `json:"properties,omitempty" yaml:"properties"`
}

// Field is one telemetry value: one of Values in turn when given, else a
// number in [Min, Max]: uniformly random, or a random walk of at most Walk
// per message when Walk > 0.
type Field struct {
	Min      float64 `json:"min" yaml:"min"`
	Max      float64 `json:"max" yaml:"max"`
	Walk     float64 `json:"walk,omitempty" yaml:"walk"`
	Decimals *int    `json:"decimals,omitempty" yaml:"decimals"`
	Values   []any   `json:"values,omitempty" yaml:"values"`
}

// Method is a direct-method handler: the status and payload it answers
// with, after Delay. A method named like a ready-made one (lockDoor) with no
// status and payload answers as that one does.
type Method struct {
	Name    string `json:"name" yaml:"name"`
	Status  int    `json:"status,omitempty" yaml:"status"`
	Payload any    `json:"payload,omitempty" yaml:"payload"`
	Delay   string `json:"delay,omitempty" yaml:"delay"`
}

// readyMade are the handlers a Method gets by name alone: lockDoor answers
// as the "Schedule and broadcast jobs" tutorial's simDevice does.
var readyMade = map[string]Method{
	"lockDoor": {Name: "lockDoor", Status: 200, Payload: map[string]any{"Response": "lockDoor called successfully"}},
}

// Limits of one spec and of the simulator, so a typo cannot start a
// million devices or flood the hub.
const (
	MaxCount       = 10000
	MinInterval    = 100 * time.Millisecond
	MaxFields      = 50
	MaxMethods     = 20
	MaxDelay       = 5 * time.Minute
	maxPayload     = 8 << 10
	defaultPeriod  = 10 * time.Second
	maxPropsLength = 4 << 10
)

func invalid(format string, args ...any) error {
	return iothub.Errorf(iothub.ArgumentInvalid, "simulation: "+format, args...)
}

// compiled is a validated spec with parsed durations.
type compiled struct {
	Spec
	interval time.Duration
	delays   map[string]time.Duration
	methods  map[string]Method
	payloads map[string][]byte
}

// DeviceIDs returns the ids of the devices the spec runs.
func (s *Spec) DeviceIDs() []string {
	if s.Count <= 1 {
		return []string{s.ID}
	}
	ids := make([]string, s.Count)
	for i := range ids {
		ids[i] = s.ID + "-" + strconv.Itoa(i+1)
	}
	return ids
}

func compile(s Spec) (*compiled, error) {
	c := &compiled{Spec: s, delays: map[string]time.Duration{}, methods: map[string]Method{}, payloads: map[string][]byte{}}
	if s.ID == "" {
		return nil, invalid("id is required")
	}
	if s.Count < 0 || s.Count > MaxCount {
		return nil, invalid("count must be between 1 and %d", MaxCount)
	}
	c.interval = defaultPeriod
	if t := s.Telemetry; t != nil {
		if t.Interval != "" {
			d, err := time.ParseDuration(t.Interval)
			if err != nil || d < MinInterval {
				return nil, invalid("telemetry.interval %q must be a duration of at least %s", t.Interval, MinInterval)
			}
			c.interval = d
		}
		if len(t.Fields) > MaxFields {
			return nil, invalid("at most %d telemetry fields", MaxFields)
		}
		for name, f := range t.Fields {
			if len(f.Values) == 0 && f.Min > f.Max {
				return nil, invalid("telemetry field %q: min is above max", name)
			}
			if f.Walk < 0 {
				return nil, invalid("telemetry field %q: walk must not be negative", name)
			}
			if f.Decimals != nil && (*f.Decimals < 0 || *f.Decimals > 10) {
				return nil, invalid("telemetry field %q: decimals must be between 0 and 10", name)
			}
		}
		n := 0
		for k, v := range t.Properties {
			n += len(k) + len(v)
		}
		if n > maxPropsLength {
			return nil, invalid("telemetry.properties are longer than %d bytes", maxPropsLength)
		}
	}
	if len(s.Methods) > MaxMethods {
		return nil, invalid("at most %d methods", MaxMethods)
	}
	for _, m := range s.Methods {
		if m.Name == "" {
			return nil, invalid("a method needs a name")
		}
		if _, dup := c.methods[m.Name]; dup {
			return nil, invalid("method %q is declared twice", m.Name)
		}
		if r, ok := readyMade[m.Name]; ok && m.Status == 0 && m.Payload == nil {
			m.Status, m.Payload = r.Status, r.Payload
		}
		if m.Status == 0 {
			m.Status = 200
		}
		if m.Status < 100 || m.Status > 999 {
			return nil, invalid("method %q: status %d is not a status code", m.Name, m.Status)
		}
		if m.Delay != "" {
			d, err := time.ParseDuration(m.Delay)
			if err != nil || d < 0 || d > MaxDelay {
				return nil, invalid("method %q: delay %q must be a duration up to %s", m.Name, m.Delay, MaxDelay)
			}
			c.delays[m.Name] = d
		}
		b, err := json.Marshal(m.Payload)
		if err != nil {
			return nil, invalid("method %q: payload: %v", m.Name, err)
		}
		if len(b) > maxPayload {
			return nil, invalid("method %q: payload is longer than %d bytes", m.Name, maxPayload)
		}
		c.methods[m.Name] = m
		c.payloads[m.Name] = b
	}
	return c, nil
}
