package hub

import (
	"os/exec"
	"strings"
	"testing"
)

// Domain packages know nothing of HTTP, MQTT or SQL; only the transports,
// the store and this package do (README, "Package layout").
func TestDomainPackagesStayPure(t *testing.T) {
	forbidden := []string{"net/http", "database/sql", "github.com/mochi-mqtt/", "github.com/gorilla/", "modernc.org/",
		"github.com/iothub-emulator/iothub-emulator/sqlite", "github.com/iothub-emulator/iothub-emulator/broker",
		"github.com/iothub-emulator/iothub-emulator/httpapi", "github.com/iothub-emulator/iothub-emulator/hub"}
	for _, pkg := range []string{"iothub", "sasauth", "registry", "twins", "methods", "jobs", "query", "messaging", "groupcommit", "configurations", "digitaltwins", "fileupload", "provisioning"} {
		out, err := exec.Command("go", "list", "-deps", "../"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				// database/sql/driver arrives through github.com/google/uuid's Valuer.
				if strings.HasPrefix(dep, f) && dep != "database/sql/driver" {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
