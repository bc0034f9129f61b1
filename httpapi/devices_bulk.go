package httpapi

import (
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/wire"
)

// bulkDevices runs a bulk registry request, POST /devices (digest §3.2):
// 200 with isSuccessful true when every entry took effect, 400 with the
// same body listing the failed entries otherwise. Request-level problems
// (too many entries, an identity named twice, a bad body) are ordinary hub
// errors.
func (s *Server) bulkDevices(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	ops, err := wire.DecodeBulk(body)
	if err != nil {
		return err
	}
	failed, err := s.Registry.Bulk(ctx(r), ops)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if len(failed) > 0 {
		status = http.StatusBadRequest
	}
	return writeJSON(w, status, wire.FromBulkErrors(failed))
}
