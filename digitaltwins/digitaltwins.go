// Package digitaltwins is IoT Plug and Play's view of a device: the digital
// twin that the hub derives from the device twin (components, writable
// properties with their acknowledgements, $model from the device's model id),
// JSON Patch updates that become desired-property patches, and commands that
// become direct methods named "component*command". It keeps no state of its
// own: the twins service and the methods invoker do the work.
package digitaltwins

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Twins reads and patches device twins; *twins.Service is one.
type Twins interface {
	Get(ctx context.Context, key twins.Key) (*twins.Twin, error)
	PatchService(ctx context.Context, key twins.Key, ifMatch string, p twins.ServicePatch) (*twins.Twin, error)
}

// Methods invokes direct methods; *methods.Invoker is one.
type Methods interface {
	Invoke(ctx context.Context, req methods.Request) (methods.Response, error)
}

// Deps are the service's collaborators; both are required.
type Deps struct {
	Twins   Twins
	Methods Methods
}

// Config is empty today; it keeps the package's construction style.
type Config struct{}

// Service serves digital twins over device twins.
type Service struct {
	d Deps
}

// NewService returns a service.
func NewService(d Deps, _ Config) (*Service, error) {
	if err := iothub.CheckDeps("digitaltwins", d); err != nil {
		return nil, err
	}
	return &Service{d: d}, nil
}

// Close releases nothing; it is here for the hub's uniform shutdown.
func (s *Service) Close() error { return nil }

// componentMarker is the member PnP devices and the hub put in a component's
// object in the twin: "__t": "c".
const (
	componentMarker = "__t"
	componentValue  = "c"
)

// Get returns the digital twin of a device and the twin etag it was read at.
func (s *Service) Get(ctx context.Context, deviceID string) (map[string]any, int64, error) {
	t, err := s.d.Twins.Get(ctx, twins.Key{DeviceID: deviceID})
	if err != nil {
		return nil, 0, err
	}
	return Render(t), t.ETag, nil
}

// Render builds the digital twin of t (the hub's documented shape):
//
//	{"$dtId": id, <root properties>, <component>: {<properties>, "$metadata": {...}},
//	 "$metadata": {"$model": modelId, <root property>: {...}}}
//
// A property's value is the reported one (the "value" of an acknowledged
// writable property); its metadata has lastUpdateTime, and for writable
// properties desiredValue and desiredVersion, and ackVersion, ackCode and
// ackDescription once the device acknowledged. Components are the top-level
// objects marked "__t": "c" in reported or desired properties.
func Render(t *twins.Twin) map[string]any {
	rep, des := t.Reported.Data, t.Desired.Data
	repMeta, desMeta := t.Reported.Metadata, t.Desired.Metadata
	out := map[string]any{"$dtId": t.DeviceID}
	rootMeta := map[string]any{"$model": t.ModelID}
	for _, name := range unionKeys(rep, des) {
		if isComponent(rep[name]) || isComponent(des[name]) {
			rm, _ := rep[name].(map[string]any)
			dm, _ := des[name].(map[string]any)
			comp := map[string]any{}
			meta := map[string]any{}
			renderProperties(comp, meta, rm, dm, child(repMeta, name), child(desMeta, name))
			comp["$metadata"] = meta
			out[name] = comp
			continue
		}
		renderProperty(out, rootMeta, name, rep, des, repMeta, desMeta)
	}
	out["$metadata"] = rootMeta
	return out
}

func renderProperties(out, meta, rep, des, repMeta, desMeta map[string]any) {
	for _, name := range unionKeys(rep, des) {
		if name == componentMarker {
			continue
		}
		renderProperty(out, meta, name, rep, des, repMeta, desMeta)
	}
}

// renderProperty writes one property's value into out and its metadata into
// meta.
func renderProperty(out, meta map[string]any, name string, rep, des, repMeta, desMeta map[string]any) {
	m := map[string]any{}
	var lastUpdate string
	if rv, ok := rep[name]; ok {
		if ack, ok := rv.(map[string]any); ok && isAck(ack) {
			out[name] = ack["value"]
			m["ackVersion"] = ack["av"]
			m["ackCode"] = ack["ac"]
			if d, ok := ack["ad"]; ok {
				m["ackDescription"] = d
			}
		} else {
			out[name] = rv
		}
		lastUpdate = lastUpdated(child(repMeta, name))
	}
	if dv, ok := des[name]; ok {
		m["desiredValue"] = dv
		dm := child(desMeta, name)
		if v, ok := dm["$lastUpdatedVersion"]; ok {
			m["desiredVersion"] = v
		}
		if lu := lastUpdated(dm); lu > lastUpdate {
			lastUpdate = lu
		}
	}
	if lastUpdate != "" {
		m["lastUpdateTime"] = lastUpdate
	}
	meta[name] = m
}

// isAck reports whether a reported object is a writable property's
// acknowledgement: {"value", "ac", "av"[, "ad"]}.
func isAck(m map[string]any) bool {
	_, v := m["value"]
	_, ac := m["ac"]
	_, av := m["av"]
	return v && ac && av
}

func isComponent(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m[componentMarker] == componentValue
}

func child(m map[string]any, name string) map[string]any {
	c, _ := m[name].(map[string]any)
	return c
}

func lastUpdated(meta map[string]any) string {
	s, _ := meta["$lastUpdated"].(string)
	return s
}

// unionKeys lists the data members of a and b, without $-members, sorted.
func unionKeys(a, b map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]any{a, b} {
		for k := range m {
			if !seen[k] && !strings.HasPrefix(k, "$") {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Op is one JSON Patch operation (RFC 6902) on a digital twin.
type Op struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Update applies a JSON Patch to the digital twin as a desired-properties
// patch on the device twin (202 on the hub): add and replace set a root or
// component property ("/prop", "/component/prop", or "/component" with an
// object of properties), remove deletes it. A two-segment path names a
// component when its first segment is one, or is not in the twin yet (so a
// solution can write a component before the device reports it); otherwise
// it is a nested member of a root property. ifMatch is checked against the
// twin etag. It returns the new twin etag.
func (s *Service) Update(ctx context.Context, deviceID, ifMatch string, ops []Op) (int64, error) {
	if len(ops) == 0 {
		return 0, iothub.Errorf(iothub.ArgumentInvalid, "The digital twin patch must hold at least one operation.")
	}
	key := twins.Key{DeviceID: deviceID}
	t, err := s.d.Twins.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	patch := map[string]any{}
	for _, op := range ops {
		if err := addOp(patch, t, op); err != nil {
			return 0, err
		}
	}
	out, err := s.d.Twins.PatchService(ctx, key, ifMatch, twins.ServicePatch{Desired: patch})
	if err != nil {
		return 0, err
	}
	return out.ETag, nil
}

func addOp(patch map[string]any, t *twins.Twin, op Op) error {
	segs, err := splitPointer(op.Path)
	if err != nil {
		return err
	}
	var value any
	switch op.Op {
	case "add", "replace":
		if len(op.Value) == 0 {
			return iothub.Errorf(iothub.ArgumentInvalid, "The '%s' operation on '%s' needs a value.", op.Op, op.Path)
		}
		if err := json.Unmarshal(op.Value, &value); err != nil {
			return iothub.Errorf(iothub.ArgumentInvalid, "The value of '%s' is not valid JSON.", op.Path)
		}
	case "remove":
	default:
		return iothub.Errorf(iothub.ArgumentInvalid, "The digital twin patch operation '%s' is not supported; use add, replace or remove.", op.Op)
	}
	first := segs[0]
	known := has(t.Reported.Data, first) || has(t.Desired.Data, first)
	component := isComponent(t.Reported.Data[first]) || isComponent(t.Desired.Data[first])
	if len(segs) == 1 {
		if obj, ok := value.(map[string]any); ok && (component || (!known && obj[componentMarker] == componentValue)) {
			// A whole component: its properties, marked.
			c := map[string]any{componentMarker: componentValue}
			for k, v := range obj {
				c[k] = v
			}
			patch[first] = c
			return nil
		}
		patch[first] = value // nil for remove: null deletes
		return nil
	}
	if component || !known {
		c, _ := patch[first].(map[string]any)
		if c == nil {
			c = map[string]any{componentMarker: componentValue}
			patch[first] = c
		}
		setPointer(c, segs[1:], value)
		return nil
	}
	setPointer(patch, segs, value)
	return nil
}

func has(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

// splitPointer splits a JSON Pointer (RFC 6901) into unescaped segments.
func splitPointer(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") || len(p) < 2 {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The patch path '%s' must name a property, as in /property or /component/property.", p)
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if s == "" {
			return nil, iothub.Errorf(iothub.ArgumentInvalid, "The patch path '%s' has an empty segment.", p)
		}
		if strings.HasPrefix(s, "$") {
			return nil, iothub.Errorf(iothub.ArgumentInvalid, "The patch path '%s' names a read-only member.", p)
		}
		segs[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return segs, nil
}

func setPointer(m map[string]any, segs []string, v any) {
	for _, s := range segs[:len(segs)-1] {
		next, ok := m[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[s] = next
		}
		m = next
	}
	m[segs[len(segs)-1]] = v
}

// Command is a digital-twin command invocation.
type Command struct {
	DeviceID string
	// Component is "" for a root-level command.
	Component, Name string
	// Payload is the JSON sent to the device (nil: null).
	Payload                         json.RawMessage
	ConnectTimeout, ResponseTimeout time.Duration
}

// MethodName is the direct method a command travels as: the name for a
// root-level command, "component*name" for a component's.
func (c Command) MethodName() string {
	if c.Component == "" {
		return c.Name
	}
	return c.Component + "*" + c.Name
}

// Invoke runs a command as a direct method and returns the device's status
// and payload; errors are the invoker's (404103 DeviceNotOnline, 504101
// GatewayTimeout, ...).
func (s *Service) Invoke(ctx context.Context, c Command) (methods.Response, error) {
	if c.Name == "" {
		return methods.Response{}, iothub.Errorf(iothub.ArgumentInvalid, "The command name is empty.")
	}
	if strings.Contains(c.Component, "*") || strings.Contains(c.Name, "*") {
		return methods.Response{}, iothub.Errorf(iothub.ArgumentInvalid, "Component and command names cannot contain '*'.")
	}
	return s.d.Methods.Invoke(ctx, methods.Request{
		DeviceID: c.DeviceID, MethodName: c.MethodName(), Payload: c.Payload,
		ConnectTimeout: c.ConnectTimeout, ResponseTimeout: c.ResponseTimeout,
	})
}
