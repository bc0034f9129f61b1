package sqlite

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// The twin codec must read and write exactly what encoding/json does (see
// twinjson.go): these compare both on random twin-shaped trees and on the
// edge cases by hand.

var jsonEdgeStrings = []string{
	"", "a", "fw", "héllo", "日本語", "emoji 😀", "<b>&amp;</b>", `quote " and \ backslash`, "tab\there", "nl\nx",
	"\x00\x01\x1f", "\u2028\u2029", "bad \xff utf8", "\xed\xa0\x80", "$metadata", "a.b", " ", "\u007f",
}

var jsonEdgeNumbers = []any{
	int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), int64(1)<<53 + 1,
	0.5, math.Copysign(0, -1), 1e-6, 1e-7, 9.99e-7, 1e20, 1e21, 1.5e300, -2.5e-300, math.SmallestNonzeroFloat64, math.MaxFloat64, 3.14159, 100.0,
	json.Number("123456789012345678901234567890"),
}

func randomTree(r *rand.Rand, depth int) any {
	switch n := r.IntN(10); {
	case n == 0:
		return nil
	case n == 1:
		return r.IntN(2) == 0
	case n == 2:
		return jsonEdgeStrings[r.IntN(len(jsonEdgeStrings))]
	case n == 3:
		return jsonEdgeNumbers[r.IntN(len(jsonEdgeNumbers))]
	case n == 4:
		return r.Int64N(1<<40) - 1<<39
	case n == 5:
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30))
	case n <= 7 && depth > 0:
		a := make([]any, r.IntN(4))
		for i := range a {
			a[i] = randomTree(r, depth-1)
		}
		return a
	case depth > 0:
		return randomObject(r, depth-1)
	default:
		return "leaf"
	}
}

func randomObject(r *rand.Rand, depth int) map[string]any {
	m := map[string]any{}
	for range r.IntN(6) {
		k := jsonEdgeStrings[r.IntN(len(jsonEdgeStrings))]
		if r.IntN(2) == 0 {
			k += string(rune('a' + r.IntN(26)))
		}
		m[k] = randomTree(r, depth)
	}
	return m
}

func TestTwinJSON_RandomTreesMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 7))
	for i := range 5000 {
		m := randomObject(r, 4)
		want, werr := encodeObjectStd(m)
		got, gerr := encodeObject(m)
		if got != want || (werr == nil) != (gerr == nil) {
			t.Fatalf("tree %d: encode = %q, %v; encoding/json %q, %v", i, got, gerr, want, werr)
		}
		if werr != nil {
			continue
		}
		wantTree, werr := decodeObjectStd(want)
		gotTree, gerr := decodeObject(want)
		if werr != nil || gerr != nil || !reflect.DeepEqual(gotTree, wantTree) {
			t.Fatalf("tree %d from %q: decode = %#v, %v; encoding/json %#v, %v", i, want, gotTree, gerr, wantTree, werr)
		}
	}
}

func TestTwinJSON_DecodeMatchesEncodingJSON(t *testing.T) {
	for _, text := range []string{
		`{}`, ` { } `, `null`, ` null `, `{"a":1}`, `{"a":1,"a":2}`, `{"a" : [ 1 , 2.5 , "x" , true , false , null , { } , [ ] ]}`,
		`{"big":123456789012345678901234567890,"f":1e400,"neg":-0,"e":1E2,"frac":0.1,"exp":-1.5e-7}`,
		`{"esc":"\"\\\/\b\f\n\r\t\u00e9\u0000\u2028"}`, `{"pair":"\ud83d\ude00","lone":"\ud83d","low":"\ude00x"}`,
		`{"raw":"é日本"}`, "{\"bad\":\"\xff\"}", `{"a":1} trailing`, `{"a":1}{"b":2}`,
		`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":.5}`, `{"a":1e}`, `{"a":tru}`, `{"a":"x`, `{"a" 1}`, `{"a":1,}`, `[1]`, `"s"`, ``,
		"{\"ctl\":\"a\tb\"}", `{"u":"\u12"}`, `{"u":"\uZZZZ"}`, `{"x":"\q"}`,
	} {
		want, werr := decodeObjectStd(text)
		got, gerr := decodeObject(text)
		if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("decode %q = %#v, %v; encoding/json %#v, %v", text, got, gerr, want, werr)
		}
	}
}

func TestTwinJSON_EncodeEdgeCases(t *testing.T) {
	for _, m := range []map[string]any{
		nil, {}, {"nan": math.NaN()}, {"inf": math.Inf(-1)}, {"int": 3}, {"f32": float32(0.1)}, {"num": json.Number("12")},
		{"s": strings.Repeat("x", 1000)}, {"nested": map[string]any{"b": []any{}, "a": map[string]any{}}},
	} {
		want, werr := encodeObjectStd(m)
		got, gerr := encodeObject(m)
		if m == nil {
			want, werr = encodeObjectStd(map[string]any{})
		}
		if got != want || (werr == nil) != (gerr == nil) {
			t.Errorf("encode %#v = %q, %v; encoding/json %q, %v", m, got, gerr, want, werr)
		}
	}
}

func FuzzTwinJSON_Decode(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,2.5,"x\u00e9",null,{"b":true}]}`, `{"a":"\ud83d\ude00"}`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		want, werr := decodeObjectStd(text)
		got, gerr := decodeObject(text)
		if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("decode %q = %#v, %v; encoding/json %#v, %v", text, got, gerr, want, werr)
		}
	})
}
