package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Object is a JSON object that keeps its members in order. The hub's
// documents have a fixed member order (digest §4.1); map-based encoding
// would sort them.
type Object []Member

// Member is one name/value pair of an Object.
type Member struct {
	Key   string
	Value any
}

// MarshalJSON writes the members in order. Values are encoded without
// HTML escaping, as the hub does; note that json.Marshal re-escapes the
// result, so prefer Encode.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := Encode(m.Key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := Encode(m.Value)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Encode is json.Marshal without HTML escaping ("<" stays "<", as in the
// hub's responses) and without a trailing newline.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// ETag renders a twin etag counter: base64 of 8 bytes big-endian
// (1 → "AAAAAAAAAAE=", digest §4.4).
func ETag(counter int64) string { return twins.FormatETag(counter) }

// Twin returns the service-side twin document (REST GET/PATCH/PUT
// /twins/{id} responses and query items), member for member as the hub
// sends it (digest §4.1):
//
//	deviceId, [moduleId], etag, deviceEtag, status, [statusReason],
//	statusUpdateTime, connectionState, lastActivityTime,
//	cloudToDeviceMessageCount, authenticationType,
//	x509Thumbprint{primaryThumbprint, secondaryThumbprint}, modelId, version,
//	[tags], properties{desired{…, $metadata, $version}, reported{…}},
//	capabilities{iotEdge} (device twins only), [deviceScope], [parentScopes]
//
// Bracketed members appear only when set (tags once written, even empty).
// Empty thumbprints are null. Times use twins.FormatTime, so a zero time is
// "0001-01-01T00:00:00Z". Identity strings are rendered as given.
func Twin(t *twins.Twin) Object {
	o := Object{{"deviceId", t.DeviceID}}
	if t.ModuleID != "" {
		o = append(o, Member{"moduleId", t.ModuleID})
	}
	o = append(o,
		Member{"etag", ETag(t.ETag)},
		Member{"deviceEtag", t.DeviceEtag},
		Member{"status", t.Status},
	)
	if t.StatusReason != "" {
		o = append(o, Member{"statusReason", t.StatusReason})
	}
	o = append(o,
		Member{"statusUpdateTime", twins.FormatTime(t.StatusUpdateTime)},
		Member{"connectionState", t.ConnectionState},
		Member{"lastActivityTime", twins.FormatTime(t.LastActivityTime)},
		Member{"cloudToDeviceMessageCount", t.CloudToDeviceMessageCount},
		Member{"authenticationType", t.AuthenticationType},
		Member{"x509Thumbprint", Object{
			{"primaryThumbprint", nullIfEmpty(t.PrimaryThumbprint)},
			{"secondaryThumbprint", nullIfEmpty(t.SecondaryThumbprint)},
		}},
		Member{"modelId", t.ModelID},
		Member{"version", t.Version},
	)
	if t.Tags != nil {
		o = append(o, Member{"tags", t.Tags})
	}
	o = append(o, Member{"properties", Object{
		{"desired", properties(t.Desired, true)},
		{"reported", properties(t.Reported, true)},
	}})
	if t.ModuleID == "" {
		o = append(o, Member{"capabilities", Object{{"iotEdge", t.IotEdge}}})
	}
	if t.DeviceScope != "" {
		o = append(o, Member{"deviceScope", t.DeviceScope})
	}
	if len(t.ParentScopes) > 0 {
		o = append(o, Member{"parentScopes", t.ParentScopes})
	}
	return o
}

// TwinJSON is Encode(Twin(t)).
func TwinJSON(t *twins.Twin) []byte {
	return mustEncode(Twin(t))
}

// TwinForDevice is the body of the MQTT twin GET response
// ($iothub/twin/res/200/, digest §1.8): desired and reported with their
// $version and no $metadata, no "properties" wrapper:
// {"desired":{…,"$version":n},"reported":{…,"$version":m}}.
func TwinForDevice(t *twins.Twin) []byte {
	return mustEncode(Object{
		{"desired", properties(t.Desired, false)},
		{"reported", properties(t.Reported, false)},
	})
}

// DesiredPatch is the payload of a desired-properties notification
// ($iothub/twin/PATCH/properties/desired/?$version=n, digest §1.8): the
// patch as applied, nulls kept, plus "$version": n.
func DesiredPatch(patch map[string]any, version int64) []byte {
	o := sortedMembers(patch)
	o = append(o, Member{"$version", version})
	return mustEncode(o)
}

// properties renders a desired or reported section: its data members
// (sorted by name), then $metadata when withMetadata, then $version.
func properties(p twins.Properties, withMetadata bool) Object {
	o := sortedMembers(p.Data)
	if withMetadata {
		meta := p.Metadata
		if meta == nil {
			meta = map[string]any{}
		}
		// Map encoding sorts, and "$lastUpdated" < "$lastUpdatedVersion" <
		// any valid property name, which is the hub's order.
		o = append(o, Member{"$metadata", meta})
	}
	return append(o, Member{"$version", p.Version})
}

// sortedMembers returns m's members sorted by name.
func sortedMembers(m map[string]any) Object {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	o := make(Object, 0, len(keys)+2)
	for _, k := range keys {
		o = append(o, Member{k, m[k]})
	}
	return o
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// mustEncode encodes documents built here from JSON-like values; failure
// means a value of a type JSON has no form for, a bug.
func mustEncode(v any) []byte {
	b, err := Encode(v)
	if err != nil {
		panic("wire: encoding twin document: " + err.Error())
	}
	return b
}

// DecodeTwinPatch decodes the body of a service twin PATCH or PUT
// (digest §3.4): {"tags":{…},"properties":{"desired":{…}}}. Member names
// match case-insensitively (digest §3.0); other members (deviceId, etag,
// version, ...) are ignored, as are "$metadata" and "$version" inside desired
// and reported, so a twin fetched by an SDK can be sent back. A member that
// is absent or null leaves the ServicePatch field nil. Numbers keep their
// precision (twins.Normalize). For a PUT, pass Tags and Desired to
// twins.Service.ReplaceService and ignore Reported.
//
// Errors: 400006 IotHubFormatError for a body that is not one JSON value,
// 400004 ArgumentInvalid for a document of the wrong shape.
func DecodeTwinPatch(body []byte) (twins.ServicePatch, error) {
	var p twins.ServicePatch
	doc, err := decodeObject(body)
	if err != nil {
		return p, err
	}
	if p.Tags, err = member(doc, "tags"); err != nil {
		return p, err
	}
	props, err := member(doc, "properties")
	if err != nil {
		return p, err
	}
	if p.Desired, err = member(props, "desired"); err != nil {
		return p, err
	}
	p.ClearDesired = p.Desired == nil && memberIsNull(props, "desired")
	if p.Reported, err = member(props, "reported"); err != nil {
		return p, err
	}
	stripReadOnly(p.Desired)
	stripReadOnly(p.Reported)
	return p, nil
}

// DecodeReportedPatch decodes the payload of a device's reported-properties
// PATCH ($iothub/twin/PATCH/properties/reported/, digest §1.8), which must
// be a JSON object. Errors as DecodeTwinPatch.
func DecodeReportedPatch(body []byte) (map[string]any, error) {
	return decodeObject(body)
}

// decodeObject decodes body as exactly one JSON object with exact numbers.
func decodeObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, iothub.Wrap(iothub.IotHubFormatError, err, "The request body is not valid JSON.")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, iothub.Errorf(iothub.IotHubFormatError, "The request body is not valid JSON: data after the document.")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The request body must be a JSON object.")
	}
	return twins.NormalizeMap(m), nil
}

// memberIsNull reports whether m has the member name (matched as member
// does) with the value null, as opposed to absent.
func memberIsNull(m map[string]any, name string) bool {
	for k, v := range m {
		if strings.EqualFold(k, name) && v == nil {
			return true
		}
	}
	return false
}

// member returns the object member name of m, matched case-insensitively
// (an exact match wins); absent or null gives nil.
func member(m map[string]any, name string) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	v, ok := m[name]
	if !ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if strings.EqualFold(k, name) {
				v, ok = m[k], true
				break
			}
		}
	}
	if !ok || v == nil {
		return nil, nil
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "'%s' must be a JSON object.", name)
	}
	return obj, nil
}

// stripReadOnly drops the read-only members a fetched twin carries in its
// desired and reported sections.
func stripReadOnly(m map[string]any) {
	delete(m, "$metadata")
	delete(m, "$version")
}
