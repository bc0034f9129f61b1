package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/simdevices"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// twinWriter lets the registry write the twin part of bulk and seed
// entries through the twins service, so its rules (limits, $metadata,
// versions, desired notifications) apply unchanged.
type twinWriter struct{ t *twins.Service }

func (w twinWriter) MergeTwin(ctx context.Context, deviceID, moduleID, ifMatch string, tags, desired map[string]any) error {
	_, err := w.t.PatchService(ctx, twins.Key{DeviceID: deviceID, ModuleID: moduleID}, ifMatch, twins.ServicePatch{Tags: tags, Desired: desired})
	return err
}

// MergeTwins writes the twin parts of a bulk request's entries in one
// transaction (twins.Service.PatchEach).
func (w twinWriter) MergeTwins(ctx context.Context, merges []registry.TwinMerge) []error {
	ps := make([]twins.KeyedPatch, len(merges))
	for i, m := range merges {
		ps[i] = twins.KeyedPatch{Key: twins.Key{DeviceID: m.DeviceID, ModuleID: m.ModuleID}, IfMatch: m.IfMatch,
			Patch: twins.ServicePatch{Tags: m.Tags, Desired: m.Desired}}
	}
	return w.t.PatchEach(ctx, ps)
}

// InitialTwin lets a bulk create write its twin parts with the identity
// (twins.Service.PatchFresh).
func (w twinWriter) InitialTwin(tags, desired map[string]any) (registry.TwinInit, error) {
	apply, err := w.t.PatchFresh(twins.ServicePatch{Tags: tags, Desired: desired})
	if err != nil {
		return nil, err
	}
	return func(fresh any) error {
		t, ok := fresh.(*twins.Twin)
		if !ok {
			return fmt.Errorf("initial twin: the store passed a %T, not a *twins.Twin", fresh)
		}
		return apply(t)
	}, nil
}

// SeedIdentity is a device or module named in the seed file.
type SeedIdentity struct {
	DeviceID, ModuleID string
	// Created is false when the identity already existed (it is then left
	// as it was).
	Created bool
}

// seedFile is the --seed document, JSON or YAML:
//
//	{"devices": [{"id": "thermostat1", "primaryKey": "…", "status": "enabled",
//	  "tags": {"site": "lab"}, "desired": {"interval": 10},
//	  "modules": [{"id": "sensor"}]}]}
//
// "simulations" declares simulated devices (simdevices.Spec), started at
// every start, so they survive restarts; their devices are created when
// missing.
type seedFile struct {
	Devices     []seedEntry       `json:"devices" yaml:"devices"`
	Simulations []simdevices.Spec `json:"simulations" yaml:"simulations"`
	// Enrollments and EnrollmentGroups are DPS enrollments in the service
	// API's JSON shape (provisioning.go).
	Enrollments      []map[string]any `json:"enrollments" yaml:"enrollments"`
	EnrollmentGroups []map[string]any `json:"enrollmentGroups" yaml:"enrollmentGroups"`
	// ConsumerGroups are created on the Event Hub-compatible endpoint.
	ConsumerGroups []string `json:"consumerGroups" yaml:"consumerGroups"`
}

// seedEntry is one device or module. Omitted keys are generated; authType
// is sas (default), selfSigned (with thumbprints) or certificateAuthority.
type seedEntry struct {
	ID                  string         `json:"id" yaml:"id"`
	Status              string         `json:"status" yaml:"status"`
	StatusReason        string         `json:"statusReason" yaml:"statusReason"`
	AuthType            string         `json:"authType" yaml:"authType"`
	PrimaryKey          string         `json:"primaryKey" yaml:"primaryKey"`
	SecondaryKey        string         `json:"secondaryKey" yaml:"secondaryKey"`
	PrimaryThumbprint   string         `json:"primaryThumbprint" yaml:"primaryThumbprint"`
	SecondaryThumbprint string         `json:"secondaryThumbprint" yaml:"secondaryThumbprint"`
	IotEdge             bool           `json:"iotEdge" yaml:"iotEdge"`
	ManagedBy           string         `json:"managedBy" yaml:"managedBy"`
	Tags                map[string]any `json:"tags" yaml:"tags"`
	Desired             map[string]any `json:"desired" yaml:"desired"`
	Modules             []seedEntry    `json:"modules" yaml:"modules"`
}

// readSeed parses a seed file: YAML for .yaml/.yml, JSON otherwise. Unknown
// members are errors, so a typo does not silently drop a setting.
func readSeed(path string) (*seedFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f seedFile
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return &f, nil
}

func (e *seedEntry) op(deviceID, moduleID string) registry.BulkOp {
	op := registry.BulkOp{
		Mode: registry.Create,
		Identity: &registry.Identity{DeviceID: deviceID, ModuleID: moduleID, Status: e.Status, StatusReason: e.StatusReason,
			IotEdge: e.IotEdge, ManagedBy: e.ManagedBy},
		Tags:    twins.NormalizeMap(e.Tags),
		Desired: twins.NormalizeMap(e.Desired),
	}
	op.Auth = &registry.Authentication{Type: e.AuthType, PrimaryKey: e.PrimaryKey, SecondaryKey: e.SecondaryKey,
		PrimaryThumbprint: e.PrimaryThumbprint, SecondaryThumbprint: e.SecondaryThumbprint}
	return op
}

// seedChunk is how many identities one seed transaction writes.
const seedChunk = 1000

// seed creates the devices and modules of the seed file that do not exist
// yet; existing ones are left alone, so restarting with the same file is a
// no-op. Any other failure stops the start.
func (h *Hub) seed(ctx context.Context, path string) error {
	f, err := readSeed(path)
	if err != nil {
		return fmt.Errorf("--seed: %w", err)
	}
	for _, g := range f.ConsumerGroups {
		if _, err := h.EventHub.CreateConsumerGroup(ctx, g); err != nil {
			return fmt.Errorf("--seed: %w", err)
		}
	}
	h.seedSimulations = f.Simulations
	var ops []registry.BulkOp
	for i := range f.Devices {
		d := &f.Devices[i]
		ops = append(ops, d.op(d.ID, ""))
		for j := range d.Modules {
			m := &d.Modules[j]
			if len(m.Modules) > 0 {
				return fmt.Errorf("--seed: module %s/%s cannot have modules", d.ID, m.ID)
			}
			ops = append(ops, m.op(d.ID, m.ID))
		}
	}
	for start := 0; start < len(ops); start += seedChunk {
		chunk := ops[start:min(start+seedChunk, len(ops))]
		failed, err := h.Registry.Import(ctx, chunk)
		if err != nil {
			return fmt.Errorf("--seed: %w", err)
		}
		exists := map[registry.Key]bool{}
		for _, e := range failed {
			if iothub.Is(e.Err, iothub.DeviceAlreadyExists) || iothub.Is(e.Err, iothub.ModuleAlreadyExistsOnDevice) {
				exists[registry.Key{DeviceID: e.DeviceID, ModuleID: e.ModuleID}] = true
				continue
			}
			name := e.DeviceID
			if e.ModuleID != "" {
				name += "/" + e.ModuleID
			}
			return fmt.Errorf("--seed %s: %s: %s", path, name, iothub.MessageOf(e.Err))
		}
		for _, op := range chunk {
			k := registry.Key{DeviceID: op.Identity.DeviceID, ModuleID: op.Identity.ModuleID}
			h.Seeded = append(h.Seeded, SeedIdentity{DeviceID: k.DeviceID, ModuleID: k.ModuleID, Created: !exists[k]})
		}
	}
	return nil
}
