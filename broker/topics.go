package broker

import (
	"net/url"
	"strconv"
	"strings"
)

// RouteKind names what a device publish means to the hub.
type RouteKind int

const (
	RouteUnknown RouteKind = iota
	RouteTelemetry
	RouteTwinGet
	RouteTwinPatchReported
	RouteMethodResponse
)

// Route is a parsed device publish topic (protocol digest §1.5).
type Route struct {
	Kind RouteKind
	// DeviceID and ModuleID are taken from the topic for telemetry; for
	// $iothub topics the identity comes from the connection.
	DeviceID, ModuleID string
	// PropertyBag is the raw text after messages/events/ (telemetry).
	PropertyBag string
	// RID is the $rid value, verbatim.
	RID string
	// Status is the status of a method response.
	Status int
}

// route parses a topic a device published to. It is pure, table-tested and
// fuzzed; anything it does not recognise is RouteUnknown.
func route(topic string) Route {
	switch {
	case strings.HasPrefix(topic, "devices/"):
		rest := topic[len("devices/"):]
		dev, rest, ok := strings.Cut(rest, "/")
		if !ok || dev == "" {
			return Route{}
		}
		mod := ""
		if strings.HasPrefix(rest, "modules/") {
			mod, rest, ok = strings.Cut(rest[len("modules/"):], "/")
			if !ok || mod == "" {
				return Route{}
			}
		}
		if bag, ok := strings.CutPrefix(rest, "messages/events/"); ok {
			return Route{Kind: RouteTelemetry, DeviceID: dev, ModuleID: mod, PropertyBag: bag}
		}
		if rest == "messages/events" {
			return Route{Kind: RouteTelemetry, DeviceID: dev, ModuleID: mod}
		}
		return Route{}
	case strings.HasPrefix(topic, "$iothub/twin/GET/"):
		if rid, ok := ridOf(topic[len("$iothub/twin/GET/"):]); ok {
			return Route{Kind: RouteTwinGet, RID: rid}
		}
	case strings.HasPrefix(topic, "$iothub/twin/PATCH/properties/reported/"):
		if rid, ok := ridOf(topic[len("$iothub/twin/PATCH/properties/reported/"):]); ok {
			return Route{Kind: RouteTwinPatchReported, RID: rid}
		}
	case strings.HasPrefix(topic, "$iothub/methods/res/"):
		status, rest, ok := strings.Cut(topic[len("$iothub/methods/res/"):], "/")
		if !ok {
			return Route{}
		}
		n, err := strconv.Atoi(status)
		if err != nil {
			return Route{}
		}
		if rid, ok := ridOf(rest); ok {
			return Route{Kind: RouteMethodResponse, RID: rid, Status: n}
		}
	}
	return Route{}
}

// ridOf reads "?$rid=X[&...]" and returns X verbatim; the SDKs need it echoed
// exactly as sent (digest §1.8).
func ridOf(s string) (string, bool) {
	q, ok := strings.CutPrefix(s, "?")
	if !ok {
		return "", false
	}
	for _, kv := range strings.Split(q, "&") {
		if v, ok := strings.CutPrefix(kv, "$rid="); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

// ParsePropertyBag decodes a telemetry property bag: '&'-separated key=value
// pairs, percent-decoded leniently (invalid escapes stay literal, '+' stays
// '+'), one trailing '/' stripped (C# appends one). Keys may be "$." or
// "%24." prefixed system properties (digest §1.6).
func ParsePropertyBag(bag string) map[string]string {
	bag = strings.TrimSuffix(bag, "/")
	props := map[string]string{}
	if bag == "" {
		return props
	}
	for _, kv := range strings.Split(bag, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		props[lenientUnescape(k)] = lenientUnescape(v)
	}
	return props
}

func lenientUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if d, err := url.PathUnescape(s[i : i+3]); err == nil {
				b.WriteString(d)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// identityOf splits an MQTT client id into device and module ids.
func identityOf(clientID string) (deviceID, moduleID string) {
	deviceID, moduleID, _ = strings.Cut(clientID, "/")
	return
}

// parseUsername reads "{host}/{deviceId}[/{moduleId}]/?api-version=..&.." and
// the variants the SDKs send (Go's and old C's "/api-version=" without '?'),
// and returns the identity path and query parameters (digest §1.2).
func parseUsername(username, clientID string) (path string, params url.Values, ok bool) {
	host, rest, found := strings.Cut(username, "/")
	if !found || host == "" {
		return "", nil, false
	}
	var query string
	if p, q, found := strings.Cut(rest, "/?"); found {
		path, query = p, q
	} else if i := strings.Index(rest, "/api-version="); i >= 0 {
		path, query = rest[:i], rest[i+1:]
	} else {
		path = strings.TrimSuffix(rest, "/")
	}
	params = url.Values{}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		params.Set(lenientUnescape(k), lenientUnescape(v))
	}
	return path, params, path == clientID
}
