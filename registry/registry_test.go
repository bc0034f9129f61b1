package registry_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		code iothub.Code // 0 means valid
	}{
		{"dev1", 0},
		{"a", 0},
		{strings.Repeat("x", 128), 0},
		{"a-.+%_#*?!(),=@$'z", 0},
		{"UPPER-lower-0123", 0},
		{"", iothub.ArgumentNull},
		{strings.Repeat("x", 129), iothub.ArgumentInvalid},
		{"!@#$%^&", iothub.ArgumentInvalid},
		{"a b", iothub.ArgumentInvalid},
		{"a/b", iothub.ArgumentInvalid},
		{"dév", iothub.ArgumentInvalid},
		{"a\x00", iothub.ArgumentInvalid},
		{"a:b", iothub.ArgumentInvalid},
		{"a;b", iothub.ArgumentInvalid},
	} {
		err := registry.ValidateID("DeviceId", tc.id)
		if tc.code == 0 {
			if err != nil {
				t.Errorf("ValidateID(%q) = %v, want nil", tc.id, err)
			}
			continue
		}
		if got := iothub.CodeOf(err); got != tc.code {
			t.Errorf("ValidateID(%q) = %v, want code %d", tc.id, err, tc.code)
		}
		if iothub.MessageOf(err) == "" {
			t.Errorf("ValidateID(%q): empty message", tc.id)
		}
	}
}

func TestETagString(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "MA=="}, // digest §3.1 capture
		{1, "MQ=="},
		{10, "MTA="},
		{318751955, "MzE4NzUxOTU1"}, // digest §5 capture
		{-5, base64.StdEncoding.EncodeToString([]byte("-5"))},
	} {
		if got := registry.ETagString(tc.n); got != tc.want {
			t.Errorf("ETagString(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func key(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }

func TestNormalize(t *testing.T) {
	s, err := registry.NewService(registry.Deps{Store: nopStore{}, Sessions: &fakeSessions{}, Twins: &twinsRecorder{}}, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	good := key(32)
	for _, tc := range []struct {
		name string
		in   registry.Identity
		code iothub.Code
		want func(t *testing.T, id *registry.Identity)
	}{
		{name: "defaults", in: registry.Identity{}, want: func(t *testing.T, id *registry.Identity) {
			if id.Status != registry.StatusEnabled || id.Auth.Type != registry.AuthSAS {
				t.Errorf("status %q auth %q", id.Status, id.Auth.Type)
			}
			for _, k := range []string{id.Auth.PrimaryKey, id.Auth.SecondaryKey} {
				if raw, err := base64.StdEncoding.DecodeString(k); err != nil || len(raw) != 32 {
					t.Errorf("generated key %q", k)
				}
			}
			if id.Auth.PrimaryKey == id.Auth.SecondaryKey {
				t.Error("the two generated keys are equal")
			}
		}},
		{name: "status any case", in: registry.Identity{Status: "Disabled"}, want: func(t *testing.T, id *registry.Identity) {
			if id.Status != registry.StatusDisabled {
				t.Errorf("status %q", id.Status)
			}
		}},
		{name: "bad status", in: registry.Identity{Status: "off"}, code: iothub.ArgumentInvalid},
		{name: "statusReason 128", in: registry.Identity{StatusReason: strings.Repeat("r", 128)}},
		{name: "statusReason 129", in: registry.Identity{StatusReason: strings.Repeat("r", 129)}, code: iothub.ArgumentInvalid},
		{name: "given keys kept", in: registry.Identity{Auth: registry.Authentication{Type: "SAS", PrimaryKey: good, SecondaryKey: key(16)}},
			want: func(t *testing.T, id *registry.Identity) {
				if id.Auth.PrimaryKey != good || id.Auth.SecondaryKey != key(16) || id.Auth.Type != "sas" {
					t.Errorf("auth %+v", id.Auth)
				}
			}},
		{name: "only primary given", in: registry.Identity{Auth: registry.Authentication{PrimaryKey: good}},
			want: func(t *testing.T, id *registry.Identity) {
				if id.Auth.PrimaryKey != good || id.Auth.SecondaryKey == "" {
					t.Errorf("auth %+v", id.Auth)
				}
			}},
		{name: "key 64 bytes", in: registry.Identity{Auth: registry.Authentication{PrimaryKey: key(64)}}},
		{name: "key 15 bytes", in: registry.Identity{Auth: registry.Authentication{PrimaryKey: key(15)}}, code: iothub.ArgumentInvalid},
		{name: "key 65 bytes", in: registry.Identity{Auth: registry.Authentication{SecondaryKey: key(65)}}, code: iothub.ArgumentInvalid},
		{name: "key not base64", in: registry.Identity{Auth: registry.Authentication{PrimaryKey: "not-base64!"}}, code: iothub.ArgumentInvalid},
		{name: "sas with thumbprint", in: registry.Identity{Auth: registry.Authentication{PrimaryThumbprint: strings.Repeat("a", 40)}}, code: iothub.ArgumentInvalid},
		{name: "selfSigned SHA-1", in: registry.Identity{Auth: registry.Authentication{Type: "selfsigned", PrimaryThumbprint: strings.Repeat("ab", 20)}},
			want: func(t *testing.T, id *registry.Identity) {
				if id.Auth.Type != registry.AuthSelfSigned || id.Auth.PrimaryThumbprint != strings.Repeat("AB", 20) || id.Auth.PrimaryKey != "" {
					t.Errorf("auth %+v", id.Auth)
				}
			}},
		{name: "selfSigned SHA-256", in: registry.Identity{Auth: registry.Authentication{Type: "selfSigned", PrimaryThumbprint: strings.Repeat("0", 64), SecondaryThumbprint: strings.Repeat("f", 40)}}},
		{name: "selfSigned missing thumbprint", in: registry.Identity{Auth: registry.Authentication{Type: "selfSigned"}}, code: iothub.ArgumentInvalid},
		{name: "selfSigned 41 hex", in: registry.Identity{Auth: registry.Authentication{Type: "selfSigned", PrimaryThumbprint: strings.Repeat("a", 41)}}, code: iothub.ArgumentInvalid},
		{name: "selfSigned not hex", in: registry.Identity{Auth: registry.Authentication{Type: "selfSigned", PrimaryThumbprint: strings.Repeat("g", 40)}}, code: iothub.ArgumentInvalid},
		{name: "selfSigned with keys", in: registry.Identity{Auth: registry.Authentication{Type: "selfSigned", PrimaryKey: good, PrimaryThumbprint: strings.Repeat("a", 40)}}, code: iothub.ArgumentInvalid},
		{name: "certificateAuthority clears credentials", in: registry.Identity{Auth: registry.Authentication{Type: "certificateAuthority", PrimaryKey: good}},
			want: func(t *testing.T, id *registry.Identity) {
				if id.Auth != (registry.Authentication{Type: registry.AuthCertificateAuthority}) {
					t.Errorf("auth %+v", id.Auth)
				}
			}},
		{name: "none", in: registry.Identity{Auth: registry.Authentication{Type: "None"}}},
		{name: "unknown type", in: registry.Identity{Auth: registry.Authentication{Type: "password"}}, code: iothub.ArgumentInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.in
			err := registry.Normalize(s, &id)
			if tc.code != 0 {
				if iothub.CodeOf(err) != tc.code {
					t.Fatalf("err = %v, want code %d", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil {
				tc.want(t, &id)
			}
		})
	}
}

func TestParseImportMode(t *testing.T) {
	for in, want := range map[string]registry.ImportMode{
		"": registry.CreateOrUpdate, "create": registry.Create, "Create": registry.Create, "CREATEORUPDATE": registry.CreateOrUpdate,
		"UpdateIfMatchETag": registry.UpdateIfMatchETag, "deleteifmatchetag": registry.DeleteIfMatchETag, "updateTwin": registry.UpdateTwin,
	} {
		if got, err := registry.ParseImportMode(in); err != nil || got != want {
			t.Errorf("ParseImportMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := registry.ParseImportMode("upsert"); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Errorf("upsert: %v", err)
	}
}

// newService is a Service over a private in-memory SQLite store.
func newService(t *testing.T, clock func() time.Time) (*registry.Service, *fakeSessions) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sess := &fakeSessions{}
	s, err := registry.NewService(registry.Deps{Store: &sqlite.RegistryStore{DB: db}, Sessions: sess, Twins: &twinsRecorder{}}, registry.Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return s, sess
}

// fakeSessions records CloseSession calls: the one seam where the registry
// reaches the broker.
type fakeSessions struct{ closed []string }

func (f *fakeSessions) CloseSession(deviceID, moduleID string, forget bool) {
	s := deviceID + "/" + moduleID
	if forget {
		s += " forget"
	}
	f.closed = append(f.closed, s)
}

var _ registry.SessionCloser = (*fakeSessions)(nil)

func TestService_CreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	s, sess := newService(t, func() time.Time { return now })

	d, err := s.Create(ctx, &registry.Identity{DeviceID: "dev1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.GenerationID != "638501616000000000" {
		t.Errorf("generationId %q, want the .NET ticks of the creation time", d.GenerationID)
	}
	if _, err := s.Create(ctx, &registry.Identity{DeviceID: "dev1"}); iothub.CodeOf(err) != iothub.DeviceAlreadyExists {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := s.Create(ctx, &registry.Identity{DeviceID: "ghost", ModuleID: "m"}); iothub.CodeOf(err) != iothub.DeviceNotFound {
		t.Errorf("module of unknown device: %v", err)
	}
	if _, err := s.Create(ctx, &registry.Identity{DeviceID: "dev1", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &registry.Identity{DeviceID: "dev1", ModuleID: "m"}); iothub.CodeOf(err) != iothub.ModuleAlreadyExistsOnDevice {
		t.Errorf("duplicate module: %v", err)
	}

	stale := registry.ETagString(d.ETag)
	now = now.Add(time.Minute)
	u, err := s.Update(ctx, `"`+stale+`"`, &registry.Identity{DeviceID: "dev1", Status: "disabled"})
	if err != nil {
		t.Fatal(err)
	}
	if u.ETag == d.ETag || !u.StatusUpdatedTime.Equal(now) || u.Auth.PrimaryKey == d.Auth.PrimaryKey {
		t.Errorf("update: etag %d→%d statusUpdated %v keys regenerated %v", d.ETag, u.ETag, u.StatusUpdatedTime, u.Auth.PrimaryKey != d.Auth.PrimaryKey)
	}
	// Disabling a device closes its modules' sessions too (issue #13).
	if len(sess.closed) != 2 || sess.closed[0] != "dev1/" || sess.closed[1] != "dev1/m" {
		t.Errorf("disable closed %v", sess.closed)
	}
	if _, err := s.Update(ctx, stale, &registry.Identity{DeviceID: "dev1"}); iothub.CodeOf(err) != iothub.PreconditionFailed {
		t.Errorf("stale etag: %v", err)
	}
	if err := s.Delete(ctx, "dev1", "", stale); iothub.CodeOf(err) != iothub.PreconditionFailed {
		t.Errorf("delete with stale etag: %v", err)
	}
	sess.closed = nil
	if err := s.Delete(ctx, "dev1", "", `"*"`); err != nil {
		t.Fatal(err)
	}
	if strings.Join(sess.closed, ",") != "dev1/ forget,dev1/m forget" {
		t.Errorf("delete closed %v", sess.closed)
	}
	if _, err := s.Get(ctx, "dev1", "m"); iothub.CodeOf(err) != iothub.ModuleNotFound {
		t.Errorf("module after device delete: %v", err)
	}
	if err := s.Delete(ctx, "dev1", "", ""); iothub.CodeOf(err) != iothub.DeviceNotFound {
		t.Errorf("delete twice: %v", err)
	}
	now = now.Add(time.Second)
	again, err := s.Create(ctx, &registry.Identity{DeviceID: "dev1"})
	if err != nil {
		t.Fatal(err)
	}
	if again.GenerationID == d.GenerationID {
		t.Error("generationId reused after delete")
	}
}

// twinsRecorder is a TwinWriter that remembers what it was asked.
type twinsRecorder struct{ calls []string }

func (r *twinsRecorder) MergeTwin(_ context.Context, deviceID, moduleID, ifMatch string, tags, desired map[string]any) error {
	r.calls = append(r.calls, deviceID+"/"+moduleID+" "+ifMatch)
	return nil
}

func TestService_Bulk(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	tw := &twinsRecorder{}
	s.Twins = tw
	op := func(mode registry.ImportMode, dev, mod string) registry.BulkOp {
		return registry.BulkOp{Mode: mode, Identity: &registry.Identity{DeviceID: dev, ModuleID: mod}}
	}

	t.Run("request limits", func(t *testing.T) {
		if _, err := s.Bulk(ctx, nil); iothub.CodeOf(err) != iothub.ArgumentInvalid {
			t.Errorf("empty: %v", err)
		}
		many := make([]registry.BulkOp, registry.MaxBulkEntries+1)
		for i := range many {
			many[i] = op(registry.Create, "d"+strings.Repeat("x", i), "")
		}
		if _, err := s.Bulk(ctx, many); iothub.CodeOf(err) != iothub.TooManyDevices {
			t.Errorf("101: %v", err)
		}
		if _, err := s.Bulk(ctx, []registry.BulkOp{op(registry.Create, "a", ""), op(registry.Delete, "a", "")}); iothub.CodeOf(err) != iothub.DeviceDefinedMultipleTimes {
			t.Errorf("duplicate: %v", err)
		}
		// A device and its module are different identities.
		if errs, err := s.Bulk(ctx, []registry.BulkOp{op(registry.Create, "a", ""), op(registry.Create, "a", "m")}); err != nil || len(errs) != 0 {
			t.Errorf("device and module: %v %v", errs, err)
		}
	})

	t.Run("modes", func(t *testing.T) {
		withTags := op(registry.Create, "t1", "")
		withTags.Tags = map[string]any{"a": 1}
		errs, err := s.Bulk(ctx, []registry.BulkOp{
			op(registry.Create, "a", "m"),                   // exists
			op(registry.Update, "nope", ""),                 // missing
			op(registry.CreateOrUpdate, "b", ""),            // new
			op(registry.CreateOrUpdate, "a", ""),            // existing
			op(registry.UpdateIfMatchETag, "x", ""),         // missing
			op(registry.Delete, "nope2", ""),                // missing
			op(registry.CreateOrUpdateIfMatchETag, "c", ""), // new: no etag needed
			op(registry.Create, "ghost", "m"),               // module of a missing device
			withTags,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]iothub.Code{}
		for _, e := range errs {
			got[e.DeviceID+"/"+e.ModuleID] = iothub.CodeOf(e.Err)
		}
		want := map[string]iothub.Code{"a/m": iothub.ModuleAlreadyExistsOnDevice, "nope/": iothub.DeviceNotFound,
			"x/": iothub.DeviceNotFound, "nope2/": iothub.DeviceNotFound, "ghost/m": iothub.DeviceNotFound}
		if len(got) != len(want) {
			t.Errorf("errors %v, want %v", got, want)
		}
		for k, c := range want {
			if got[k] != c {
				t.Errorf("%s: %d, want %d", k, got[k], c)
			}
		}
		for _, id := range []string{"b", "c", "t1"} {
			if _, err := s.Get(ctx, id, ""); err != nil {
				t.Errorf("%s: %v", id, err)
			}
		}
		if strings.Join(tw.calls, ",") != "t1/ " {
			t.Errorf("twin writes %v", tw.calls)
		}
	})

	t.Run("etag modes", func(t *testing.T) {
		cur, _ := s.Get(ctx, "b", "")
		good := op(registry.UpdateIfMatchETag, "b", "")
		good.ETag = registry.ETagString(cur.ETag)
		good.Identity.Status = "disabled"
		bad := op(registry.DeleteIfMatchETag, "c", "")
		bad.ETag = "c3RhbGU="
		noEtag := op(registry.UpdateIfMatchETag, "a", "")
		errs, err := s.Bulk(ctx, []registry.BulkOp{good, bad, noEtag})
		if err != nil || len(errs) != 2 || errs[0].DeviceID != "c" || iothub.CodeOf(errs[0].Err) != iothub.PreconditionFailed ||
			iothub.CodeOf(errs[1].Err) != iothub.PreconditionFailed {
			t.Fatalf("errs %v err %v", errs, err)
		}
		after, _ := s.Get(ctx, "b", "")
		if after.Status != "disabled" || after.Auth.PrimaryKey != cur.Auth.PrimaryKey || after.ETag == cur.ETag {
			t.Errorf("after update: %+v", after)
		}
	})

	t.Run("twin modes need an existing twin and, if asked, its etag", func(t *testing.T) {
		tw.calls = nil
		noEtag := op(registry.UpdateTwinIfMatchETag, "c", "")
		errs, err := s.Bulk(ctx, []registry.BulkOp{op(registry.UpdateTwin, "b", ""), noEtag})
		if err != nil {
			t.Fatal(err)
		}
		if len(errs) != 1 || iothub.CodeOf(errs[0].Err) != iothub.PreconditionFailed || strings.Join(tw.calls, ",") != "b/ " {
			t.Errorf("errs %v calls %v", errs, tw.calls)
		}
	})
}

// nopStore is a Store for tests of rules that never reach storage.
type nopStore struct{ registry.Store }
