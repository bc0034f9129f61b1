package twins

import (
	"math"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// nest returns an object with n nested object levels below the root:
// nest(2) = {"a":{"b":{"c":leaf}}}.
func nest(n int, leaf any) obj {
	v := leaf
	for i := n; i >= 0; i-- {
		v = obj{string(rune('a' + i)): v}
	}
	return v.(obj)
}

func TestLimits_ValidatePatch(t *testing.T) {
	lim := DefaultLimits()
	for _, tc := range []struct {
		name  string
		patch obj
		ok    bool
	}{
		{"Simple", obj{"a": int64(1), "b": "x", "c": true, "d": 1.5, "e": nil}, true},
		{"Empty", obj{}, true},
		{"Nil", nil, true},
		{"UnicodeKey", obj{"température": "ok", "名前": "ok"}, true},
		{"EmptyKey", obj{"": int64(1)}, true},
		{"PunctuationKey", obj{"a-b_c:d/e": int64(1)}, true},

		// Names (digest §4.5).
		{"KeyDot", obj{"a.b": int64(1)}, false},
		{"KeyDollar", obj{"$version": int64(1)}, false},
		{"KeyHash", obj{"a#b": int64(1)}, false},
		{"KeySpace", obj{"a b": int64(1)}, false},
		{"KeyTab", obj{"a\tb": int64(1)}, false},
		{"KeyC0Control", obj{"a\x01": int64(1)}, false},
		{"KeyC1Control", obj{"a\u0085": int64(1)}, false},
		{"KeyInvalidUTF8", obj{"a\xff": int64(1)}, false},
		{"KeyNested", obj{"a": obj{"b": obj{"c.d": int64(1)}}}, false},
		{"KeyInArrayObject", obj{"a": []any{obj{"b$": int64(1)}}}, false},
		{"Key1024Bytes", obj{strings.Repeat("k", 1024): int64(1)}, true},
		{"Key1025Bytes", obj{strings.Repeat("k", 1025): int64(1)}, false},
		{"Key1026BytesMultibyte", obj{strings.Repeat("é", 513): int64(1)}, false},

		// Values.
		{"String4096Bytes", obj{"s": strings.Repeat("x", 4096)}, true},
		{"String4097Bytes", obj{"s": strings.Repeat("x", 4097)}, false},
		{"String4098BytesMultibyte", obj{"s": strings.Repeat("é", 2049)}, false},
		{"StringTooLongNested", obj{"a": obj{"s": strings.Repeat("x", 4097)}}, false},
		{"StringTooLongInArray", obj{"a": []any{strings.Repeat("x", 4097)}}, false},
		{"IntMax", obj{"i": int64(4503599627370495)}, true},
		{"IntMin", obj{"i": int64(-4503599627370496)}, true},
		{"IntAboveMax", obj{"i": int64(4503599627370496)}, false},
		{"IntBelowMin", obj{"i": int64(-4503599627370497)}, false},
		{"IntNotNormalized", obj{"i": 7}, false}, // callers Normalize first
		{"HugeFloat", obj{"f": 1e300}, true},
		{"NaN", obj{"f": math.NaN()}, false},
		{"Inf", obj{"f": math.Inf(1)}, false},
		{"UnsupportedType", obj{"x": struct{}{}}, false},

		// Arrays.
		{"Array", obj{"a": []any{int64(1), "x", true, 2.5, obj{"k": "v"}, []any{int64(1)}}}, true},
		{"ArrayNull", obj{"a": []any{int64(1), nil}}, false},
		{"ArrayObjectNullMember", obj{"a": []any{obj{"k": nil}}}, false},

		// Depth: the root is level 0, ten nested levels are allowed.
		{"Depth10", nest(10, "v"), true},
		{"Depth11", nest(11, "v"), false},
		{"Depth10EmptyObject", nest(9, obj{}), true},
		{"Depth11EmptyObject", nest(10, obj{}), false},
		{"Depth10Array", nest(9, []any{int64(1)}), true},
		{"Depth11Array", nest(10, []any{int64(1)}), false},
		{"Depth11ObjectInArray", nest(9, []any{obj{"k": "v"}}), false},
		{"Depth11ArrayInArray", nest(9, []any{[]any{int64(1)}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := lim.validatePatch(sectionDesired, tc.patch)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case !tc.ok && err == nil:
				t.Fatal("no error, want 400004")
			case !tc.ok && iothub.CodeOf(err) != iothub.ArgumentInvalid:
				t.Fatalf("error %v, want 400004 ArgumentInvalid", err)
			}
		})
	}
}

func TestLimits_Custom(t *testing.T) {
	lim := Limits{MaxDepth: 1, MaxStringBytes: 3}.withDefaults()
	if lim.MaxKeyBytes != 1024 || lim.MaxTagsBytes != 8192 || lim.MaxInt != 4503599627370495 {
		t.Fatalf("zero fields not defaulted: %+v", lim)
	}
	if err := lim.validatePatch(sectionTags, obj{"a": obj{"b": "abc"}}); err != nil {
		t.Errorf("depth 1, 3 bytes: %v", err)
	}
	if err := lim.validatePatch(sectionTags, nest(2, "v")); err == nil {
		t.Error("depth 2 accepted with MaxDepth 1")
	}
	if err := lim.validatePatch(sectionTags, obj{"a": "abcd"}); err == nil {
		t.Error("4 bytes accepted with MaxStringBytes 3")
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    obj
		want int
	}{
		{"Empty", obj{}, 0},
		{"String", obj{"ab": "xyz"}, 5},
		{"StringCountsCharacters", obj{"é": "日本"}, 3},
		{"StringSkipsControl", obj{"a": "x\ty\n"}, 3},
		{"Int", obj{"a": int64(1)}, 9},
		{"Float", obj{"a": 1.5}, 9},
		{"Bool", obj{"a": true}, 5},
		{"Null", obj{"a": nil}, 1},
		{"Nested", obj{"a": obj{"b": "c"}}, 3},
		{"Array", obj{"a": []any{int64(1), "xy", false}}, 1 + 8 + 2 + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Size(tc.m); got != tc.want {
				t.Errorf("Size(%s) = %d, want %d", js(tc.m), got, tc.want)
			}
		})
	}
}

func TestCheckSize(t *testing.T) {
	// {"k": "<n x>"} has size 1+n.
	if err := checkSize(sectionTags, obj{"k": strings.Repeat("x", 8191)}, 8192); err != nil {
		t.Errorf("8192 rejected: %v", err)
	}
	err := checkSize(sectionTags, obj{"k": strings.Repeat("x", 8192)}, 8192)
	if iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Fatalf("8193: %v, want 400004", err)
	}
	if got, want := iothub.MessageOf(err), "'Tags' size should be less than 8192 bytes."; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}
