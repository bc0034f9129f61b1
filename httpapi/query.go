package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/query"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// queryDevices is POST /devices/query: {"query": "..."} (the Go SDK sends
// "Query"; member names match case-insensitively), answered with a JSON
// array a page at a time (digest §3.6).
func (s *Server) queryDevices(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Query *string `json:"query"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if body.Query == nil || strings.TrimSpace(*body.Query) == "" {
		return iothub.Errorf(iothub.ArgumentNull, "The query cannot be null or empty.")
	}
	q, err := query.Parse(*body.Query)
	if err != nil {
		return err
	}
	size, err := pageSize(r)
	if err != nil {
		return err
	}
	next, err := continuation(r)
	if err != nil {
		return err
	}
	page, err := s.Query.Run(ctx(r), q, next, size)
	if err != nil {
		if next != "" && !isHubError(err) {
			return iothub.Errorf(iothub.ArgumentInvalid, "The continuation token is invalid.")
		}
		return err
	}
	items := make([]json.RawMessage, len(page.Items))
	for i, it := range page.Items {
		var b []byte
		if t, ok := it.(*twins.Twin); ok {
			b = wire.TwinJSON(t)
		} else if b, err = wire.Encode(it); err != nil {
			return err
		}
		items[i] = b
	}
	return writePage(w, page.ItemType, items, page.Next)
}

func isHubError(err error) bool {
	_, ok := err.(*iothub.Error)
	return ok
}
