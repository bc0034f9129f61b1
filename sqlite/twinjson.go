package sqlite

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/iothub-emulator/iothub-emulator/twins"
)

// The twin columns hold JSON objects that every twin write decodes and
// re-encodes. encoding/json does that through reflection, and decoding with
// UseNumber then needs twins.NormalizeMap's second copy of the tree; that
// was most of a reported patch's cost. The codec below works on the
// JSON-like trees of package twins directly. It produces exactly what the
// encoding/json path produces (TestTwinJSON_* compare both on random trees)
// and hands anything unusual — a malformed document, a lone surrogate, a
// type outside the tree's types — to encoding/json, so the rare case keeps
// encoding/json's behaviour instead of a second implementation of it.

// decodeObject reads a stored JSON object, integers as int64 (exact), other
// numbers as float64, as twins.NormalizeMap would leave them. null reads as
// an empty object.
func decodeObject(s string) (map[string]any, error) {
	d := treeDecoder{s: s}
	d.space()
	if d.literal("null") {
		d.space()
		if d.i == len(s) {
			return map[string]any{}, nil
		}
		return decodeObjectStd(s)
	}
	m, ok := d.object()
	if d.space(); !ok || d.i != len(s) {
		return decodeObjectStd(s)
	}
	return m, nil
}

// decodeObjectStd is the encoding/json reading that decodeObject matches.
func decodeObjectStd(s string) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	return twins.NormalizeMap(m), nil
}

// treeDecoder parses one JSON document; any method returning false means
// "not the simple case", and the caller falls back to encoding/json.
type treeDecoder struct {
	s string
	i int
}

func (d *treeDecoder) space() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *treeDecoder) literal(lit string) bool {
	if len(d.s)-d.i >= len(lit) && d.s[d.i:d.i+len(lit)] == lit {
		d.i += len(lit)
		return true
	}
	return false
}

func (d *treeDecoder) object() (map[string]any, bool) {
	if d.i >= len(d.s) || d.s[d.i] != '{' {
		return nil, false
	}
	d.i++
	m := map[string]any{}
	d.space()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return m, true
	}
	for {
		d.space()
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, false
		}
		d.i++
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		m[k] = v
		d.space()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return m, true
		default:
			return nil, false
		}
	}
}

func (d *treeDecoder) array() ([]any, bool) {
	d.i++ // '['
	a := []any{}
	d.space()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return a, true
	}
	for {
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		d.space()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return a, true
		default:
			return nil, false
		}
	}
}

func (d *treeDecoder) value() (any, bool) {
	d.space()
	if d.i >= len(d.s) {
		return nil, false
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str()
	case c == 't' && d.literal("true"):
		return true, true
	case c == 'f' && d.literal("false"):
		return false, true
	case c == 'n' && d.literal("null"):
		return nil, true
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return nil, false
}

// str reads a string. Escapes other than a \u surrogate are decoded here;
// invalid UTF-8 and surrogates go to encoding/json (it substitutes U+FFFD).
func (d *treeDecoder) str() (string, bool) {
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		return "", false
	}
	start := d.i + 1
	j, ascii := start, true
	for ; j < len(d.s); j++ {
		c := d.s[j]
		if c == '"' || c == '\\' || c < 0x20 {
			break
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if j >= len(d.s) || d.s[j] < 0x20 {
		return "", false
	}
	if d.s[j] == '"' {
		if !ascii && !utf8.ValidString(d.s[start:j]) {
			return "", false
		}
		d.i = j + 1
		return d.s[start:j], true
	}
	// Escapes: build the string.
	b := []byte(d.s[start:j])
	for j < len(d.s) {
		c := d.s[j]
		switch {
		case c == '"':
			if !utf8.Valid(b) {
				return "", false
			}
			d.i = j + 1
			return string(b), true
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			j++
			continue
		}
		if j+1 >= len(d.s) {
			return "", false
		}
		switch e := d.s[j+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if j+6 > len(d.s) {
				return "", false
			}
			r, err := strconv.ParseUint(d.s[j+2:j+6], 16, 32)
			if err != nil || r >= 0xD800 && r < 0xE000 {
				return "", false
			}
			b = utf8.AppendRune(b, rune(r))
			j += 6
			continue
		default:
			return "", false
		}
		j += 2
	}
	return "", false
}

// number reads a number as twins.Normalize would type it.
func (d *treeDecoder) number() (any, bool) {
	start, j := d.i, d.i
	if j < len(d.s) && d.s[j] == '-' {
		j++
	}
	digits := func() int {
		n := 0
		for j < len(d.s) && d.s[j] >= '0' && d.s[j] <= '9' {
			j++
			n++
		}
		return n
	}
	intStart := j
	if n := digits(); n == 0 || n > 1 && d.s[intStart] == '0' {
		return nil, false
	}
	isFloat := false
	if j < len(d.s) && d.s[j] == '.' {
		j++
		if digits() == 0 {
			return nil, false
		}
		isFloat = true
	}
	if j < len(d.s) && (d.s[j] == 'e' || d.s[j] == 'E') {
		j++
		if j < len(d.s) && (d.s[j] == '+' || d.s[j] == '-') {
			j++
		}
		if digits() == 0 {
			return nil, false
		}
		isFloat = true
	}
	d.i = j
	lit := d.s[start:j]
	if !isFloat {
		if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return n, true
		}
		return json.Number(lit), true
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return json.Number(lit), true
	}
	return f, true
}

// encodeObject writes m as encoding/json does with HTML escaping off: keys
// sorted, nil as {}.
func encodeObject(m map[string]any) (string, error) {
	if m == nil {
		m = map[string]any{}
	}
	b, err := appendTree(make([]byte, 0, 256), m)
	if err != nil {
		return encodeObjectStd(m)
	}
	return string(b), nil
}

// encodeObjectStd is the encoding/json writing that encodeObject matches.
func encodeObjectStd(m map[string]any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

// errNotTree sends a value appendTree does not write itself to encoding/json.
var errNotTree = errors.New("not a plain JSON tree")

func appendTree(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return appendString(b, v), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case float64:
		return appendFloat(b, v)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendTree(b, v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendTree(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	// json.Number, un-normalized Go types: encoding/json's business.
	return nil, errNotTree
}

// appendFloat is encoding/json's float64 format: shortest digits, 'f' form
// unless the exponent is below -6 or at least 21, exponent without a
// leading zero.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, errNotTree
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendString quotes s. Plain text (no quote, backslash, control
// character, invalid UTF-8, U+2028 or U+2029) is copied; anything else is
// quoted by encoding/json.
func appendString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' {
			plain = false
			break
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
				plain = false
				break
			}
			i += size - 1
		}
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}
