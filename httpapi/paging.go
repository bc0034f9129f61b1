package httpapi

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Page sizes of POST /devices/query and GET /jobs/v2/query: 100 unless
// x-ms-max-item-count asks otherwise, at most 1000 (digest §3.6).
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func pageSize(r *http.Request) (int, error) {
	v := r.Header.Get("x-ms-max-item-count")
	if v == "" {
		return defaultPageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, iothub.Errorf(iothub.ArgumentInvalid, "x-ms-max-item-count must be a positive integer, got '%s'.", v)
	}
	return min(n, maxPageSize), nil
}

// continuation decodes the opaque x-ms-continuation token into the key after
// which the next page starts.
func continuation(r *http.Request) (string, error) {
	v := r.Header.Get("x-ms-continuation")
	if v == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return "", iothub.Errorf(iothub.ArgumentInvalid, "The continuation token is invalid.")
	}
	return string(b), nil
}

// writePage writes one page as a JSON array with the hub's lower-case
// headers. x-ms-continuation is left out on the last page: an empty one
// makes the Node SDK loop forever (sdk-behavior.md §0.4).
func writePage(w http.ResponseWriter, itemType string, items any, next string) error {
	w.Header()["x-ms-item-type"] = []string{itemType}
	if next != "" {
		w.Header()["x-ms-continuation"] = []string{base64.RawURLEncoding.EncodeToString([]byte(next))}
	}
	return writeJSON(w, http.StatusOK, items)
}
