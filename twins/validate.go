package twins

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Limits are the hub's twin limits (digest §4.5). A zero field means the
// hub's value, so Limits{} behaves like DefaultLimits().
type Limits struct {
	// MaxKeyBytes bounds a property or tag name, in UTF-8 bytes (1 KB).
	MaxKeyBytes int
	// MaxStringBytes bounds a string value, in UTF-8 bytes (4 KB).
	MaxStringBytes int
	// MaxDepth bounds nesting. The section root (tags, desired or reported
	// itself) is level 0 and every object or array value one level deeper
	// than its container, so {"a":{"b":1}} reaches level 1. A container
	// above MaxDepth (10) is rejected: the docs' tags.one.….ten.property
	// example is the deepest valid shape. This is how the hub's own edge
	// runtime counts (Azure/iotedge ReportedPropertiesValidator).
	MaxDepth int
	// MaxTagsBytes, MaxDesiredBytes and MaxReportedBytes bound each
	// section's size after the change, computed by Size (8 KB, 32 KB, 32 KB).
	MaxTagsBytes     int
	MaxDesiredBytes  int
	MaxReportedBytes int
	// MinInt and MaxInt bound integer values (±2^52, the doubles that are
	// exact integers). Non-integer numbers are not range checked.
	MinInt, MaxInt int64
}

// DefaultLimits returns the hub's limits.
func DefaultLimits() Limits {
	return Limits{
		MaxKeyBytes:      1024,
		MaxStringBytes:   4096,
		MaxDepth:         10,
		MaxTagsBytes:     8 * 1024,
		MaxDesiredBytes:  32 * 1024,
		MaxReportedBytes: 32 * 1024,
		MinInt:           -4503599627370496,
		MaxInt:           4503599627370495,
	}
}

// withDefaults fills zero fields with the hub's values.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxKeyBytes == 0 {
		l.MaxKeyBytes = d.MaxKeyBytes
	}
	if l.MaxStringBytes == 0 {
		l.MaxStringBytes = d.MaxStringBytes
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxTagsBytes == 0 {
		l.MaxTagsBytes = d.MaxTagsBytes
	}
	if l.MaxDesiredBytes == 0 {
		l.MaxDesiredBytes = d.MaxDesiredBytes
	}
	if l.MaxReportedBytes == 0 {
		l.MaxReportedBytes = d.MaxReportedBytes
	}
	if l.MinInt == 0 && l.MaxInt == 0 {
		l.MinInt, l.MaxInt = d.MinInt, d.MaxInt
	}
	return l
}

// Section names used in error messages, as the hub spells them.
const (
	sectionTags     = "Tags"
	sectionDesired  = "Properties.Desired"
	sectionReported = "Properties.Reported"
)

// validatePatch checks the names and values of a patch (or a replacement
// document) for one section. Nulls are allowed as object members (they
// delete) but not inside arrays, nor as members of objects inside arrays.
// Every violation is 400004 ArgumentInvalid.
func (l Limits) validatePatch(section string, patch map[string]any) error {
	return l.checkObject(section, patch, 0, false)
}

func (l Limits) checkObject(path string, m map[string]any, depth int, inArray bool) error {
	if depth > l.MaxDepth {
		return invalid("Nested depth of %s exceeds %d.", path, l.MaxDepth)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the first bad key in order is reported
	for _, k := range keys {
		if err := l.checkKey(k); err != nil {
			return err
		}
		if err := l.checkValue(path+"."+k, m[k], depth+1, inArray); err != nil {
			return err
		}
	}
	return nil
}

// checkValue checks one value; depth is the level it would have as a
// container.
func (l Limits) checkValue(path string, v any, depth int, inArray bool) error {
	switch v := v.(type) {
	case nil:
		if inArray {
			return invalid("Arrays and objects inside arrays cannot contain null: %s.", path)
		}
	case bool:
	case string:
		if len(v) > l.MaxStringBytes {
			return invalid("Property or Tag value should be maximum %d bytes. Error in Property/Tag %s.", l.MaxStringBytes, path)
		}
	case int64:
		if v < l.MinInt || v > l.MaxInt {
			return invalid("Property %s has an out of bound value. Valid values are between %d and %d.", path, l.MinInt, l.MaxInt)
		}
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return invalid("Property %s has an invalid number.", path)
		}
	case json.Number:
		// Normalize leaves only numbers int64/float64 cannot hold.
		return invalid("Property %s has an out of bound value. Valid values are between %d and %d.", path, l.MinInt, l.MaxInt)
	case map[string]any:
		return l.checkObject(path, v, depth, inArray)
	case []any:
		if depth > l.MaxDepth {
			return invalid("Nested depth of %s exceeds %d.", path, l.MaxDepth)
		}
		for i, e := range v {
			if err := l.checkValue(fmt.Sprintf("%s[%d]", path, i), e, depth+1, true); err != nil {
				return err
			}
		}
	default:
		return invalid("Property %s has a value of unsupported type. Valid types are integer, float, string, bool, null, array and nested object.", path)
	}
	return nil
}

// checkKey applies the naming rules: valid UTF-8, at most MaxKeyBytes, no
// control characters, '.', '$', '#' or white space (digest §4.5; '#' and
// white space beyond ' ' as the hub's edge runtime mirrors them, since the
// hub stores '$' as '#').
func (l Limits) checkKey(k string) error {
	if len(k) > l.MaxKeyBytes {
		short := k
		if utf8.RuneCountInString(short) > 10 {
			short = string([]rune(short)[:10]) + ".."
		}
		return invalid("Length of property name %s exceeds maximum length of %d.", short, l.MaxKeyBytes)
	}
	if !utf8.ValidString(k) {
		return invalid("Property name %q is not valid UTF-8.", k)
	}
	if i := strings.IndexFunc(k, badKeyRune); i >= 0 {
		r, _ := utf8.DecodeRuneInString(k[i:])
		return invalid("Property name %q contains invalid character %q.", k, r)
	}
	return nil
}

func badKeyRune(r rune) bool {
	return r == '.' || r == '$' || r == '#' || unicode.IsControl(r) || unicode.IsSpace(r)
}

// Size is a section's size as the hub counts it against its limit
// (digest §4.5): the sum over members of the name's length plus the value's
// size, where strings count their characters except control characters,
// numbers 8, booleans 4, null 0, and objects and arrays the sum of their
// contents. Names count characters too.
func Size(m map[string]any) int {
	n := 0
	for k, v := range m {
		n += utf8.RuneCountInString(k) + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch v := v.(type) {
	case string:
		n := 0
		for _, r := range v {
			if !unicode.IsControl(r) {
				n++
			}
		}
		return n
	case bool:
		return 4
	case int64, float64, json.Number:
		return 8
	case map[string]any:
		return Size(v)
	case []any:
		n := 0
		for _, e := range v {
			n += valueSize(e)
		}
		return n
	default:
		return 0
	}
}

// checkSize rejects a section whose size after the change exceeds max.
// The hub's message reads "'Properties.Reported' size should be less than
// 32768 bytes." (seen in Azure/iotedge#7035). See Service for the code.
func checkSize(section string, m map[string]any, max int) error {
	if Size(m) > max {
		return invalid("'%s' size should be less than %d bytes.", section, max)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return iothub.Errorf(iothub.ArgumentInvalid, format, args...)
}
