package twins

import (
	"encoding/json"
	"reflect"
	"testing"
)

const (
	t0 = "2024-05-28T11:04:38.4422737Z"
	t1 = "2024-05-28T12:00:00.5Z"
)

// dm is a desired metadata node stamped at ts with version v.
func dm(ts string, v int64, children map[string]any) map[string]any {
	n := map[string]any{metaLastUpdated: ts, metaLastUpdatedVersion: v}
	for k, c := range children {
		n[k] = c
	}
	return n
}

// rm is a reported metadata node stamped at ts.
func rm(ts string, children map[string]any) map[string]any {
	n := map[string]any{metaLastUpdated: ts}
	for k, c := range children {
		n[k] = c
	}
	return n
}

type obj = map[string]any

func TestMerge(t *testing.T) {
	desired := stamp{ts: t1, version: 2, desired: true}
	for _, tc := range []struct {
		name               string
		data, meta, patch  obj
		s                  stamp
		wantData, wantMeta obj
	}{
		{
			name: "AddLeafToEmpty",
			data: obj{}, meta: obj{metaLastUpdated: t0},
			patch:    obj{"a": int64(1)},
			s:        desired,
			wantData: obj{"a": int64(1)},
			wantMeta: dm(t1, 2, obj{"a": dm(t1, 2, nil)}),
		},
		{
			name:     "NestedMergeKeepsSiblings",
			data:     obj{"a": obj{"b": int64(1), "c": int64(2)}, "z": "keep"},
			meta:     dm(t0, 1, obj{"a": dm(t0, 1, obj{"b": dm(t0, 1, nil), "c": dm(t0, 1, nil)}), "z": dm(t0, 1, nil)}),
			patch:    obj{"a": obj{"b": int64(3)}},
			s:        desired,
			wantData: obj{"a": obj{"b": int64(3), "c": int64(2)}, "z": "keep"},
			wantMeta: dm(t1, 2, obj{"a": dm(t1, 2, obj{"b": dm(t1, 2, nil), "c": dm(t0, 1, nil)}), "z": dm(t0, 1, nil)}),
		},
		{
			name:     "NestedDeleteDropsMetadata",
			data:     obj{"a": obj{"b": int64(1), "c": int64(2)}},
			meta:     dm(t0, 1, obj{"a": dm(t0, 1, obj{"b": dm(t0, 1, nil), "c": dm(t0, 1, nil)})}),
			patch:    obj{"a": obj{"c": nil}},
			s:        desired,
			wantData: obj{"a": obj{"b": int64(1)}},
			wantMeta: dm(t1, 2, obj{"a": dm(t1, 2, obj{"b": dm(t0, 1, nil)})}),
		},
		{
			name:     "DeleteWholeObject",
			data:     obj{"a": obj{"b": int64(1)}, "x": true},
			meta:     dm(t0, 1, obj{"a": dm(t0, 1, obj{"b": dm(t0, 1, nil)}), "x": dm(t0, 1, nil)}),
			patch:    obj{"a": nil},
			s:        desired,
			wantData: obj{"x": true},
			wantMeta: dm(t1, 2, obj{"x": dm(t0, 1, nil)}),
		},
		{
			name:     "DeleteAbsentKeyOnlyStampsRoot",
			data:     obj{"x": true},
			meta:     dm(t0, 1, obj{"x": dm(t0, 1, nil)}),
			patch:    obj{"nope": nil},
			s:        desired,
			wantData: obj{"x": true},
			wantMeta: dm(t1, 2, obj{"x": dm(t0, 1, nil)}),
		},
		{
			name:     "ObjectOverPrimitiveDropsNulls",
			data:     obj{"a": int64(1)},
			meta:     dm(t0, 1, obj{"a": dm(t0, 1, nil)}),
			patch:    obj{"a": obj{"x": int64(1), "y": nil, "n": obj{"m": "v"}}},
			s:        desired,
			wantData: obj{"a": obj{"x": int64(1), "n": obj{"m": "v"}}},
			wantMeta: dm(t1, 2, obj{"a": dm(t1, 2, obj{"x": dm(t1, 2, nil), "n": dm(t1, 2, obj{"m": dm(t1, 2, nil)})})}),
		},
		{
			name:     "PrimitiveOverObject",
			data:     obj{"a": obj{"b": int64(1)}},
			meta:     dm(t0, 1, obj{"a": dm(t0, 1, obj{"b": dm(t0, 1, nil)})}),
			patch:    obj{"a": "flat"},
			s:        desired,
			wantData: obj{"a": "flat"},
			wantMeta: dm(t1, 2, obj{"a": dm(t1, 2, nil)}),
		},
		{
			name:     "ArrayReplaces",
			data:     obj{"a": []any{int64(1), int64(2)}},
			meta:     dm(t0, 1, obj{"a": dm(t0, 1, nil)}),
			patch:    obj{"a": []any{obj{"k": "v"}}},
			s:        desired,
			wantData: obj{"a": []any{obj{"k": "v"}}},
			wantMeta: dm(t1, 2, obj{"a": dm(t1, 2, nil)}),
		},
		{
			name:     "MissingChildMetadataIsRebuilt",
			data:     obj{"a": obj{"b": int64(1)}},
			meta:     dm(t0, 1, nil),
			patch:    obj{"a": obj{"c": int64(2)}},
			s:        desired,
			wantData: obj{"a": obj{"b": int64(1), "c": int64(2)}},
			wantMeta: dm(t1, 2, obj{"a": dm(t1, 2, obj{"c": dm(t1, 2, nil)})}),
		},
		{
			name:     "ReportedHasNoLastUpdatedVersion",
			data:     obj{"a": obj{"b": int64(1)}},
			meta:     rm(t0, obj{"a": rm(t0, obj{"b": rm(t0, nil)})}),
			patch:    obj{"a": obj{"c": false, "b": nil}},
			s:        stamp{ts: t1},
			wantData: obj{"a": obj{"c": false}},
			wantMeta: rm(t1, obj{"a": rm(t1, obj{"c": rm(t1, nil)})}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			merge(tc.data, tc.meta, tc.patch, tc.s)
			if !reflect.DeepEqual(tc.data, tc.wantData) {
				t.Errorf("data = %s, want %s", js(tc.data), js(tc.wantData))
			}
			if !reflect.DeepEqual(tc.meta, tc.wantMeta) {
				t.Errorf("meta = %s, want %s", js(tc.meta), js(tc.wantMeta))
			}
		})
	}
}

func TestMerge_ResultSharesNothingWithPatch(t *testing.T) {
	data, meta := obj{}, obj{}
	patch := obj{"a": obj{"b": []any{int64(1)}}}
	merge(data, meta, patch, stamp{ts: t1})
	patch["a"].(obj)["b"].([]any)[0] = int64(99)
	patch["a"].(obj)["new"] = "x"
	if got := js(data); got != `{"a":{"b":[1]}}` {
		t.Errorf("data changed with the patch: %s", got)
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want any
	}{
		{"Int", json.Number("42"), int64(42)},
		{"Negative", json.Number("-4503599627370496"), int64(-4503599627370496)},
		{"Float", json.Number("1.5"), 1.5},
		{"Exponent", json.Number("1e3"), 1000.0},
		{"IntegralFloatStaysFloat", json.Number("2.0"), 2.0},
		{"HugeIntegerKept", json.Number("99999999999999999999"), json.Number("99999999999999999999")},
		{"GoInt", 7, int64(7)},
		{"GoUint8", uint8(7), int64(7)},
		{"GoFloat32", float32(0.5), 0.5},
		{"Nested", obj{"a": []any{json.Number("1"), obj{"b": 2}}}, obj{"a": []any{int64(1), obj{"b": int64(2)}}}},
		{"OthersUnchanged", obj{"s": "x", "b": true, "n": nil}, obj{"s": "x", "b": true, "n": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Normalize(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Normalize(%#v) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
