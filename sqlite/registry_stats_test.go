package sqlite_test

import (
	"context"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// Stats come from counts that triggers keep (migration 0026); after every
// kind of identity write they equal a count of the table itself.
func TestRegistryStore_StatsFollowEveryWrite(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := &sqlite.RegistryStore{DB: db}
	reg, err := registry.NewService(registry.Deps{Store: s, Sessions: noSessions{}, Twins: noTwins{}}, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	counted := func() registry.Stats {
		var st registry.Stats
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(status = 'enabled'), 0), COALESCE(SUM(status = 'disabled'), 0)
			FROM identities WHERE module_id = ''`).Scan(&st.Total, &st.Enabled, &st.Disabled); err != nil {
			t.Fatal(err)
		}
		return st
	}
	op := func(mode registry.ImportMode, dev, mod, status string) registry.BulkOp {
		return registry.BulkOp{Mode: mode, Identity: &registry.Identity{DeviceID: dev, ModuleID: mod, Status: status}}
	}
	steps := []struct {
		name string
		do   func() error
		want registry.Stats
	}{
		{"empty", func() error { return nil }, registry.Stats{}},
		{"create", func() error {
			_, err := reg.Create(ctx, &registry.Identity{DeviceID: "a"})
			return err
		}, registry.Stats{Total: 1, Enabled: 1}},
		{"create disabled and a module", func() error {
			if _, err := reg.Create(ctx, &registry.Identity{DeviceID: "b", Status: registry.StatusDisabled}); err != nil {
				return err
			}
			_, err := reg.Create(ctx, &registry.Identity{DeviceID: "a", ModuleID: "m"})
			return err
		}, registry.Stats{Total: 2, Enabled: 1, Disabled: 1}},
		{"bulk create, update to disabled, module, failing entry", func() error {
			_, err := reg.Bulk(ctx, []registry.BulkOp{op(registry.Create, "c", "", ""), op(registry.Create, "d", "", registry.StatusDisabled),
				op(registry.Update, "a", "", registry.StatusDisabled), op(registry.Create, "c", "m2", ""), op(registry.Create, "b", "", "")})
			return err
		}, registry.Stats{Total: 4, Enabled: 1, Disabled: 3}},
		{"update status back", func() error {
			_, err := reg.Update(ctx, "*", &registry.Identity{DeviceID: "a", Status: registry.StatusEnabled})
			return err
		}, registry.Stats{Total: 4, Enabled: 2, Disabled: 2}},
		{"update without a status change", func() error {
			_, err := reg.Update(ctx, "*", &registry.Identity{DeviceID: "a", Status: registry.StatusEnabled, StatusReason: "same"})
			return err
		}, registry.Stats{Total: 4, Enabled: 2, Disabled: 2}},
		{"delete a device with a module", func() error { return reg.Delete(ctx, "a", "", "*") }, registry.Stats{Total: 3, Enabled: 1, Disabled: 2}},
		{"bulk delete", func() error {
			_, err := reg.Bulk(ctx, []registry.BulkOp{op(registry.Delete, "b", "", ""), op(registry.Delete, "c", "m2", "")})
			return err
		}, registry.Stats{Total: 2, Enabled: 1, Disabled: 1}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := reg.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want || got != counted() {
			t.Fatalf("after %s: Stats = %+v, want %+v (the table counts %+v)", st.name, got, st.want, counted())
		}
	}
}
