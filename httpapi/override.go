package httpapi

import (
	"net/http"
	"strings"
)

// methodOverrideHeader lets clients whose HTTP stack has no PATCH (the Java
// SDKs' HttpURLConnection) send POST with the real method in this header;
// the hub honours it, so TwinClient.patch in Java works only if we do.
const methodOverrideHeader = "X-HTTP-Method-Override"

// overridable lists the methods a POST may be turned into: the hub's API
// uses PATCH on twins (device and module), the one verb Java cannot send.
var overridable = map[string]bool{http.MethodPatch: true}

// methodOverride rewrites POST + X-HTTP-Method-Override: PATCH into PATCH
// before routing. Other values are ignored, so the POST is routed as sent.
func methodOverride(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if m := strings.ToUpper(strings.TrimSpace(r.Header.Get(methodOverrideHeader))); overridable[m] {
				r.Method = m
			}
		}
		next.ServeHTTP(w, r)
	})
}
