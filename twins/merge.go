package twins

import (
	"encoding/json"
	"math"
	"strings"
)

// Names of the $metadata members (digest §4.2).
const (
	metaLastUpdated        = "$lastUpdated"
	metaLastUpdatedVersion = "$lastUpdatedVersion"
)

// stamp is the metadata one change writes along the paths it touches.
type stamp struct {
	ts      string // FormatTime of the change
	version int64  // new desired $version; only written when desired
	desired bool   // desired levels also carry $lastUpdatedVersion
}

// touch marks one metadata level as written by this change.
func (s stamp) touch(node map[string]any) {
	node[metaLastUpdated] = s.ts
	if s.desired {
		node[metaLastUpdatedVersion] = s.version
	}
}

// leaf is the metadata node of a value written by this change.
func (s stamp) leaf() map[string]any {
	n := make(map[string]any, 2)
	s.touch(n)
	return n
}

// merge applies patch to data in place, the hub's recursive JSON merge
// (digest §4.3): a null member deletes the key, an object merges into an
// existing object, anything else (primitives, arrays, an object over a
// non-object) replaces. meta is data's $metadata level and is updated along
// the patched paths: every level the patch passes through gets the stamp,
// deleted keys drop their metadata, replaced values get fresh metadata.
//
// data and meta must be the caller's own copies; patch values are copied, so
// patch stays independent of the result.
func merge(data, meta, patch map[string]any, s stamp) {
	s.touch(meta)
	for k, pv := range patch {
		if pv == nil {
			delete(data, k)
			delete(meta, k)
			continue
		}
		pm, isObj := pv.(map[string]any)
		if !isObj {
			data[k] = deepCopy(pv)
			meta[k] = s.leaf()
			continue
		}
		if dm, ok := data[k].(map[string]any); ok {
			mm, ok := meta[k].(map[string]any)
			if !ok {
				// A store lost this level's metadata; rebuild it.
				mm = map[string]any{}
				meta[k] = mm
			}
			merge(dm, mm, pm, s)
			continue
		}
		// An object replaces a primitive or a missing key: merging into an
		// empty object drops the patch's nulls and stamps every level.
		dm, mm := map[string]any{}, map[string]any{}
		merge(dm, mm, pm, s)
		data[k], meta[k] = dm, mm
	}
}

// deepCopy copies the JSON-like tree v so the copy shares no maps or slices
// with it.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return copyMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return v
	}
}

// copyMap is deepCopy for an object; nil stays nil.
func copyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, e := range m {
		out[k] = deepCopy(e)
	}
	return out
}

// copyProperties returns a deep copy of p with non-nil maps.
func copyProperties(p Properties) Properties {
	c := Properties{Data: copyMap(p.Data), Metadata: copyMap(p.Metadata), Version: p.Version}
	if c.Data == nil {
		c.Data = map[string]any{}
	}
	if c.Metadata == nil {
		c.Metadata = map[string]any{}
	}
	return c
}

// Normalize returns a deep copy of the JSON-like tree v with numbers in the
// two forms this package works with: int64 for integers and float64 for
// everything else. It accepts what encoding/json produces with or without
// UseNumber and what Go callers build by hand (int, uint8, float32, ...).
//
// A json.Number holding an integer outside int64, and values of types that
// have no JSON form, are kept as they are; validation rejects them. Stores
// that keep twins as JSON should decode with UseNumber and call Normalize so
// integers survive a round trip exactly.
func Normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = Normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = Normalize(e)
		}
		return out
	case json.Number:
		return normalizeNumber(v)
	case int:
		return int64(v)
	case int8:
		return int64(v)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case uint:
		return normalizeUint(uint64(v), v)
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	case uint64:
		return normalizeUint(v, v)
	case float32:
		return float64(v)
	default:
		return v
	}
}

// NormalizeMap is Normalize for an object; nil stays nil.
func NormalizeMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return Normalize(m).(map[string]any)
}

func normalizeUint(u uint64, orig any) any {
	if u > math.MaxInt64 {
		return orig
	}
	return int64(u)
}

// normalizeNumber turns a JSON number literal into int64 when it is an
// integer literal that fits, else float64. An integer literal too big for
// int64 stays a json.Number, as does a literal float64 cannot hold.
func normalizeNumber(n json.Number) any {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := n.Int64(); err == nil {
			return i
		}
		return n
	}
	f, err := n.Float64()
	if err != nil {
		return n
	}
	return f
}
