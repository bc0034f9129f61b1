package httpapi

import (
	"encoding/json"
	"strconv"
)

func (in *invokeRequest) decodeFast(body []byte) bool { return decodeInvokeRequest(body, in) }

// decodeInvokeRequest decodes the body of POST /twins/{id}/methods in one
// pass for the usual body, as json.Unmarshal would into *in: members
// matched case-insensitively, the last of a duplicated member winning, the
// payload kept as the exact bytes sent (copied). It reports false, leaving
// the body to json.Unmarshal (and its error messages), for anything less
// usual: a body that is not one JSON object, escapes or non-ASCII in member
// names or the method name, null or non-integer timeouts. What it accepts
// is valid JSON by construction: the object's punctuation is checked here,
// and each member value is a string or integer read here or passes
// json.Valid.
func decodeInvokeRequest(body []byte, in *invokeRequest) bool {
	var out invokeRequest
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return finish(body, i, in, out)
	}
	for {
		name, next, ok := plainString(body, i)
		if !ok {
			return false
		}
		i = skipSpace(body, next)
		if i >= len(body) || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		end := skipValue(body, i)
		v := body[i:end]
		if len(v) == 0 {
			return false
		}
		switch {
		case asciiEqualFold(name, "methodName"):
			s, next, ok := plainString(body, i)
			if !ok || next != end {
				return false
			}
			out.MethodName = string(s)
		case asciiEqualFold(name, "responseTimeoutInSeconds"):
			if out.ResponseTimeoutInSeconds, ok = plainInt(v); !ok {
				return false
			}
		case asciiEqualFold(name, "connectTimeoutInSeconds"):
			if out.ConnectTimeoutInSeconds, ok = plainInt(v); !ok {
				return false
			}
		default:
			if !json.Valid(v) {
				return false
			}
			if asciiEqualFold(name, "payload") {
				out.Payload = append(json.RawMessage(nil), v...)
			}
		}
		i = skipSpace(body, end)
		if i >= len(body) {
			return false
		}
		switch body[i] {
		case '}':
			return finish(body, i, in, out)
		case ',':
			i = skipSpace(body, i+1)
		default:
			return false
		}
	}
}

// finish stores out when nothing but white space follows the object's
// closing brace at body[i].
func finish(body []byte, i int, in *invokeRequest, out invokeRequest) bool {
	if skipSpace(body, i+1) != len(body) {
		return false
	}
	*in = out
	return true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the string at b[i] when it has no escapes and only
// printable ASCII: then its bytes are its value. next is past its quote.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipValue returns the end of the valid JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	depth, inString := 0, false
	for j := i; j < len(b); j++ {
		c := b[j]
		if inString {
			switch c {
			case '\\':
				j++
			case '"':
				inString = false
				if depth == 0 {
					return j + 1
				}
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j // the end of the enclosing object
			}
			depth--
			if depth == 0 {
				return j + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return j
			}
		}
	}
	return len(b)
}

// plainInt reads a JSON integer that fits an int as encoding/json would;
// false for anything else (fractions, exponents, leading zeros, null,
// strings).
func plainInt(v []byte) (int, bool) {
	digits := v
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(string(v))
	return n, err == nil
}

func asciiEqualFold(s []byte, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range s {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
