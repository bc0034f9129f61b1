// Package sasauth parses, signs and verifies IoT Hub shared access signatures
// and holds the hub's shared access policies. It is pure: no I/O, no
// transport. See the protocol digest §2 and sdk-behavior.md §3.3.
package sasauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const prefix = "SharedAccessSignature "

// Token is a parsed SAS token. ResourceURI is kept exactly as written in the
// token (still percent-encoded) because each SDK signs the string it sends,
// with its own escaping, and the HMAC must be computed over those bytes.
type Token struct {
	ResourceURI string // raw "sr" value
	Signature   []byte // decoded "sig"
	Expiry      int64  // "se", Unix seconds
	KeyName     string // "skn", empty for device keys
}

// ErrMalformed is returned for a token that does not parse.
var ErrMalformed = errors.New("malformed shared access signature")

// Parse reads "SharedAccessSignature sr=..&sig=..&se=..[&skn=..]" with its
// fields in any order (Java puts skn before sr, old docs sig first).
func Parse(s string) (Token, error) {
	var t Token
	if !strings.HasPrefix(s, prefix) {
		return t, fmt.Errorf("%w: missing %q prefix", ErrMalformed, strings.TrimSpace(prefix))
	}
	var haveSR, haveSig, haveSE bool
	for _, field := range strings.Split(s[len(prefix):], "&") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return t, fmt.Errorf("%w: field %q has no value", ErrMalformed, field)
		}
		switch k {
		case "sr":
			t.ResourceURI, haveSR = v, true
		case "sig":
			// Python's service SDK leaves '/' raw; PathUnescape keeps '+' as is.
			dec, err := url.PathUnescape(v)
			if err != nil {
				return t, fmt.Errorf("%w: sig: %v", ErrMalformed, err)
			}
			sig, err := base64.StdEncoding.DecodeString(dec)
			if err != nil {
				return t, fmt.Errorf("%w: sig is not base64", ErrMalformed)
			}
			t.Signature, haveSig = sig, true
		case "se":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return t, fmt.Errorf("%w: se is not a number", ErrMalformed)
			}
			t.Expiry, haveSE = n, true
		case "skn":
			name, err := url.QueryUnescape(v)
			if err != nil {
				return t, fmt.Errorf("%w: skn: %v", ErrMalformed, err)
			}
			t.KeyName = name
		}
	}
	if !haveSR || !haveSig || !haveSE {
		return t, fmt.Errorf("%w: sr, sig and se are required", ErrMalformed)
	}
	return t, nil
}

// Expired reports whether the token is past its expiry at now.
func (t Token) Expired(now time.Time) bool { return now.Unix() >= t.Expiry }

// VerifyKey reports whether the token was signed with key (base64-encoded,
// as it appears in connection strings and device records).
func (t Token) VerifyKey(key string) bool {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(raw) == 0 {
		return false
	}
	want := signature(raw, t.ResourceURI, t.Expiry)
	return subtle.ConstantTimeCompare(want, t.Signature) == 1
}

// Resource returns the resource URI decoded once (percent escapes only:
// '+' stays '+', as device ids may hold it), with any trailing '/' removed.
// Go's SDK escapes module tokens twice: a resource whose separators are
// still escaped after one decoding is decoded once more.
func (t Token) Resource() string {
	r := t.ResourceURI
	for range 2 {
		d, err := url.PathUnescape(r)
		if err != nil {
			break
		}
		r = d
		if strings.Contains(r, "/") || !strings.Contains(strings.ToUpper(r), "%2F") {
			break
		}
	}
	return strings.TrimRight(r, "/")
}

// Covers reports whether the token's resource URI is a segment prefix of
// target (e.g. "myhub/devices/d1"), ignoring the host part: tests reach the
// hub as localhost, 127.0.0.1, host:port or through a gateway name
// (sdk-behavior.md §3.3). The words "devices" and "modules" match in any
// case; device and module ids are case-sensitive and match exactly, or
// after one more decoding (Go's SDK escapes module tokens twice). A token
// that could name two ids this way is still only accepted when its
// signature verifies for the identity connecting.
func (t Token) Covers(target string) bool {
	have := strings.Split(t.Resource(), "/")[1:]
	want := strings.Split(strings.TrimRight(target, "/"), "/")[1:]
	if len(have) > len(want) {
		return false
	}
	for i := range have {
		if i%2 == 0 {
			if !strings.EqualFold(have[i], want[i]) {
				return false
			}
			continue
		}
		if have[i] == want[i] {
			continue
		}
		if d, err := url.PathUnescape(have[i]); err != nil || d != want[i] {
			return false
		}
	}
	return true
}

func signature(key []byte, resourceURI string, expiry int64) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(resourceURI + "\n" + strconv.FormatInt(expiry, 10)))
	return mac.Sum(nil)
}

// Sign builds a token for resource (unencoded, e.g. "localhost/devices/d1")
// with a base64 key, as the SDKs do: sr is the query-escaped resource.
func Sign(resource, key, keyName string, expiry time.Time) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return "", fmt.Errorf("key is not base64: %w", err)
	}
	sr := url.QueryEscape(resource)
	se := expiry.Unix()
	sig := base64.StdEncoding.EncodeToString(signature(raw, sr, se))
	s := prefix + "sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + strconv.FormatInt(se, 10)
	if keyName != "" {
		s += "&skn=" + url.QueryEscape(keyName)
	}
	return s, nil
}
