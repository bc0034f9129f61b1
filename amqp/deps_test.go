package amqp

import (
	"os/exec"
	"strings"
	"testing"
)

// The engine is a protocol library on the standard library only: it imports nothing of the hub
// and no third-party module (go-amqp is for tests only).
func TestEngineImportsOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	self := "github.com/iothub-emulator/iothub-emulator/amqp"
	for _, dep := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(dep, "/")
		if dep != self && strings.Contains(first, ".") {
			t.Errorf("amqp depends on %s", dep)
		}
	}
}
