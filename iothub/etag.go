package iothub

import "strings"

// MatchETag reports whether an If-Match value admits an entity whose etag
// is etag; the registry's identities and the twins use this one rule.
// "" and "*" match anything; otherwise surrounding white space, a W/ prefix
// and one pair of double quotes are ignored and the rest must equal etag,
// case-sensitively (digest §3.0).
func MatchETag(ifMatch, etag string) bool {
	v := strings.TrimSpace(ifMatch)
	v = strings.TrimPrefix(v, "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v == "" || v == "*" || v == etag
}
