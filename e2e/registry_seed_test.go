package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// --seed: devices from a file at start (examples/seed.json and seed.yaml).

func TestRegistry_SeedExamples(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"seed.json", "seed.yaml"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			path, _ := filepath.Abs(filepath.Join("..", "examples", file))
			dir := t.TempDir()
			seed := func(c *hub.Config) { c.SeedFile = path }
			h := hubtest.Start(t, hubtest.WithDataDir(dir), hubtest.WithConfig(seed))
			if len(h.Seeded) != 6 {
				t.Fatalf("seeded %+v", h.Seeded)
			}
			for _, s := range h.Seeded {
				if !s.Created {
					t.Errorf("%+v not created", s)
				}
			}
			th := decodeMap(t, h.Do(t, http.MethodGet, "/devices/thermostat1", nil))
			if th["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"] != "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" {
				t.Errorf("thermostat1 keys: %v", th["authentication"])
			}
			tw := string(h.Do(t, http.MethodGet, "/twins/thermostat1", nil).Body)
			if !strings.Contains(tw, `"site":"lab"`) || !strings.Contains(tw, `"floor":2`) || !strings.Contains(tw, `"telemetryInterval":10`) {
				t.Errorf("thermostat1 twin: %s", tw)
			}
			if tw := string(h.Do(t, http.MethodGet, "/twins/gateway1/modules/filter", nil).Body); !strings.Contains(tw, `"threshold":25.5`) {
				t.Errorf("module twin: %s", tw)
			}
			if st := decodeMap(t, h.Do(t, http.MethodGet, "/devices/retired1", nil)); st["status"] != "disabled" || st["statusReason"] != "replaced by thermostat1" {
				t.Errorf("retired1: %v", st)
			}
			cs, err := h.DeviceConnectionString(context.Background(), "x509device1", "")
			if err != nil || !strings.HasSuffix(cs, ";x509=true") {
				t.Errorf("x509device1: %q %v", cs, err)
			}
			// The seeded device connects with the key from the file.
			mustDial(t, h, &hubtest.Device{ID: "thermostat1", PrimaryKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, connOpts{tls: true})

			// A restart with the same file leaves existing devices alone.
			h.Do(t, http.MethodPatch, "/twins/thermostat1", map[string]any{"tags": map[string]any{"site": "moved"}})
			h.Restart(t)
			for _, s := range h.Seeded {
				if s.Created {
					t.Errorf("%+v created again", s)
				}
			}
			if tw := string(h.Do(t, http.MethodGet, "/twins/thermostat1", nil).Body); !strings.Contains(tw, `"site":"moved"`) {
				t.Errorf("the seed overwrote a change: %s", tw)
			}
		})
	}
}

func TestRegistry_SeedErrorsStopTheStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"typo.json":    `{"devices":[{"id":"a","primaryKeyy":"x"}]}`,
		"badkey.json":  `{"devices":[{"id":"a","primaryKey":"short"}]}`,
		"badid.yaml":   "devices:\n  - id: 'no spaces'\n",
		"notjson.json": `[`,
		"nested.yaml":  "devices:\n  - id: a\n    modules:\n      - id: m\n        modules: [{id: x}]\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := hub.Config{InMemory: true, HTTPAddr: "127.0.0.1:0", SeedFile: path, Logger: nil}
		h, err := hub.Open(context.Background(), cfg)
		if err == nil {
			h.Close()
			t.Errorf("%s: the hub started", name)
			continue
		}
		if !strings.Contains(err.Error(), "--seed") {
			t.Errorf("%s: error %v does not name --seed", name, err)
		}
	}
	if _, err := hub.Open(context.Background(), hub.Config{InMemory: true, SeedFile: filepath.Join(dir, "missing.json")}); err == nil {
		t.Error("a missing seed file was accepted")
	}
}
