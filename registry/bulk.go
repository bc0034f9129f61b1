package registry

import (
	"context"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// ImportMode is what a bulk entry does (digest §3.2; the C# SDK's ImportMode).
type ImportMode string

// The import modes, spelled as the C# enum serialises them. ParseImportMode
// accepts any letter case (Node and Go send PascalCase).
const (
	CreateOrUpdate            ImportMode = "createOrUpdate"
	Create                    ImportMode = "create"
	Update                    ImportMode = "update"
	UpdateIfMatchETag         ImportMode = "updateIfMatchETag"
	CreateOrUpdateIfMatchETag ImportMode = "createOrUpdateIfMatchETag"
	Delete                    ImportMode = "delete"
	DeleteIfMatchETag         ImportMode = "deleteIfMatchETag"
	UpdateTwin                ImportMode = "updateTwin"
	UpdateTwinIfMatchETag     ImportMode = "updateTwinIfMatchETag"
)

var importModes = []ImportMode{CreateOrUpdate, Create, Update, UpdateIfMatchETag, CreateOrUpdateIfMatchETag,
	Delete, DeleteIfMatchETag, UpdateTwin, UpdateTwinIfMatchETag}

// ParseImportMode matches s case-insensitively; "" is createOrUpdate, the
// C# enum's zero value. Returns 400004 ArgumentInvalid for anything else.
func ParseImportMode(s string) (ImportMode, error) {
	if s == "" {
		return CreateOrUpdate, nil
	}
	for _, m := range importModes {
		if strings.EqualFold(s, string(m)) {
			return m, nil
		}
	}
	return "", iothub.Errorf(iothub.ArgumentInvalid, "Invalid importMode '%s'.", s)
}

// MaxBulkEntries is the hub's limit on entries in one POST /devices.
const MaxBulkEntries = 100

// BulkOp is one entry of a bulk registry request.
type BulkOp struct {
	Mode ImportMode
	// Identity carries the ids and the fields to write. For updates, an
	// empty Status keeps the current one and a nil Auth keeps the current
	// credentials.
	Identity *Identity
	// Auth replaces the credentials when not nil.
	Auth *Authentication
	// ETag is compared with the identity etag by the *IfMatchETag modes,
	// TwinETag with the twin etag by updateTwinIfMatchETag.
	ETag, TwinETag string
	// Tags and Desired, when not nil, are merged into the twin after the
	// identity is written (create and update modes) or alone (updateTwin).
	Tags, Desired map[string]any
	// Reported is refused when not empty: reported properties belong to
	// the device.
	Reported map[string]any
}

// BulkError is the failure of one entry.
type BulkError struct {
	DeviceID, ModuleID string
	Err                error
}

// TwinWriter merges tags and desired properties into a twin. The hub
// implements it over the twins service, so this package needs no twins
// import. ifMatch follows If-Match rules ("" matches anything).
type TwinWriter interface {
	MergeTwin(ctx context.Context, deviceID, moduleID, ifMatch string, tags, desired map[string]any) error
}

// TwinMerge is one entry's twin part for TwinBatchWriter.
type TwinMerge struct {
	DeviceID, ModuleID, IfMatch string
	Tags, Desired               map[string]any
}

// TwinBatchWriter is a TwinWriter that can merge the twin parts of many
// entries at once, in one transaction instead of one per entry. It returns
// one error per merge, with MergeTwin's rules; merges of the same twin
// apply in order.
type TwinBatchWriter interface {
	TwinWriter
	MergeTwins(ctx context.Context, merges []TwinMerge) []error
}

// TwinInitializer is a TwinWriter that can write a new identity's twin
// parts together with the identity: InitialTwin validates tags and desired
// as a service patch and returns how to apply them to the fresh twin the
// store creates, so a bulk create costs one row insert instead of an
// insert and a twin update.
type TwinInitializer interface {
	TwinWriter
	InitialTwin(tags, desired map[string]any) (TwinInit, error)
}

// TwinInit applies an entry's twin parts to the fresh twin of its new
// identity. The store passes the twin in its own type (for the hub's
// SQLite store, *twins.Twin) and writes the result with the identity; an
// error leaves the fresh twin, and is the entry's error.
type TwinInit func(fresh any) error

// ChangeKind says what a store does with one bulk entry.
type ChangeKind int

// Change kinds.
const (
	Keep ChangeKind = iota
	Insert
	Replace
	Remove
)

// Change is the decision for one bulk entry: the identity to insert or
// replace (Remove and Keep ignore it).
type Change struct {
	Kind     ChangeKind
	Identity *Identity
	// Twin, on an Insert, writes the entry's twin parts into the new
	// identity's twin (nil: the fresh twin).
	Twin TwinInit
}

// Key names an identity.
type Key struct{ DeviceID, ModuleID string }

// Bulk runs a POST /devices request (digest §3.2) and returns the entries
// that failed; the others took effect. Whole-request errors: 400004 for an
// empty request, 413002 TooManyDevices above MaxBulkEntries, 400011
// DeviceDefinedMultipleTimes when an identity appears twice.
func (s *Service) Bulk(ctx context.Context, ops []BulkOp) ([]BulkError, error) {
	if len(ops) == 0 {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The request must contain at least one device.")
	}
	if len(ops) > MaxBulkEntries {
		return nil, iothub.Errorf(iothub.TooManyDevices, "Too many devices: a bulk request may hold at most %d, got %d.", MaxBulkEntries, len(ops))
	}
	seen := make(map[Key]bool, len(ops))
	for _, op := range ops {
		k := Key{op.Identity.DeviceID, op.Identity.ModuleID}
		if seen[k] {
			return nil, iothub.Errorf(iothub.DeviceDefinedMultipleTimes, "Device %s is defined multiple times in the request.", describe(k))
		}
		seen[k] = true
	}
	return s.Import(ctx, ops)
}

func describe(k Key) string {
	if k.ModuleID != "" {
		return "'" + k.DeviceID + "' module '" + k.ModuleID + "'"
	}
	return "'" + k.DeviceID + "'"
}

// Import applies ops without the request limits of Bulk, all identity
// writes in one store transaction; the seed loader uses it directly. An
// identity named twice is processed in order.
func (s *Service) Import(ctx context.Context, ops []BulkOp) ([]BulkError, error) {
	errs := make([]error, len(ops))
	keys := make([]Key, 0, len(ops))
	idx := make([]int, 0, len(ops)) // position in ops of each key
	for i := range ops {
		op := &ops[i]
		if err := s.prepare(op); err != nil {
			errs[i] = err
			continue
		}
		if op.Mode == UpdateTwin || op.Mode == UpdateTwinIfMatchETag {
			continue // twin only, below
		}
		keys = append(keys, Key{op.Identity.DeviceID, op.Identity.ModuleID})
		idx = append(idx, i)
	}

	// Modules of deleted devices lose their sessions too; list them first.
	var modules []*Identity
	for _, j := range idx {
		if op := ops[j]; (op.Mode == Delete || op.Mode == DeleteIfMatchETag) && op.Identity.ModuleID == "" {
			ms, _ := s.Store.ListModules(ctx, op.Identity.DeviceID)
			modules = append(modules, ms...)
		}
	}
	// Twin parts of entries that may create their identity, ready to be
	// written with it (validated now, outside the store's transaction).
	inits := make([]TwinInit, len(ops))
	if ti, ok := s.Twins.(TwinInitializer); ok {
		for _, i := range idx {
			if op := &ops[i]; (op.Mode == Create || op.Mode == CreateOrUpdate || op.Mode == CreateOrUpdateIfMatchETag) &&
				(op.Tags != nil || op.Desired != nil) {
				inits[i], _ = ti.InitialTwin(op.Tags, op.Desired) // on error, MergeTwin below reports it
			}
		}
	}
	initialized := make([]bool, len(ops))
	var closeDisabled, forget []Key
	deletedDevice := map[string]bool{}
	if len(keys) > 0 {
		storeErrs, err := s.Store.Apply(ctx, keys, func(j int, cur *Identity) (Change, error) {
			ch, err := s.decide(&ops[idx[j]], cur)
			if err == nil && ch.Kind == Insert && inits[idx[j]] != nil {
				ch.Twin = inits[idx[j]]
				initialized[idx[j]] = true
			}
			if err == nil {
				switch {
				case ch.Kind == Remove:
					forget = append(forget, keys[j])
					if keys[j].ModuleID == "" {
						deletedDevice[keys[j].DeviceID] = true
					}
				case ch.Kind == Replace && cur.Status == StatusEnabled && ch.Identity.Status == StatusDisabled:
					closeDisabled = append(closeDisabled, keys[j])
				}
			}
			return ch, err
		})
		if err != nil {
			return nil, err
		}
		for j, e := range storeErrs {
			if e != nil {
				errs[idx[j]] = e
			}
		}
	}
	for _, k := range closeDisabled {
		s.Sessions.CloseSession(k.DeviceID, k.ModuleID, false)
		if k.ModuleID == "" {
			// A disabled device's modules cannot connect either.
			mods, _ := s.Store.ListModules(ctx, k.DeviceID)
			for _, m := range mods {
				s.Sessions.CloseSession(m.DeviceID, m.ModuleID, false)
			}
		}
	}
	for _, k := range forget {
		s.Sessions.CloseSession(k.DeviceID, k.ModuleID, true)
	}
	for _, m := range modules {
		if deletedDevice[m.DeviceID] {
			s.Sessions.CloseSession(m.DeviceID, m.ModuleID, true)
		}
	}

	// Twin contents go through the twins service, after the identities
	// exist; a twin failure is reported for its entry (the identity write
	// stays).
	var merges []TwinMerge
	var mergeAt []int
	for i := range ops {
		op := &ops[i]
		twinOnly := op.Mode == UpdateTwin || op.Mode == UpdateTwinIfMatchETag
		if errs[i] != nil || initialized[i] || op.Mode == Delete || op.Mode == DeleteIfMatchETag || (!twinOnly && op.Tags == nil && op.Desired == nil) {
			continue
		}
		ifMatch := ""
		if op.Mode == UpdateTwinIfMatchETag {
			ifMatch = op.TwinETag
			if ifMatch == "" {
				errs[i] = iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, twinETag is required for updateTwinIfMatchETag.")
				continue
			}
		}
		merges = append(merges, TwinMerge{DeviceID: op.Identity.DeviceID, ModuleID: op.Identity.ModuleID, IfMatch: ifMatch, Tags: op.Tags, Desired: op.Desired})
		mergeAt = append(mergeAt, i)
	}
	if bw, ok := s.Twins.(TwinBatchWriter); ok && len(merges) > 1 {
		for j, err := range bw.MergeTwins(ctx, merges) {
			errs[mergeAt[j]] = err
		}
	} else {
		for j, m := range merges {
			errs[mergeAt[j]] = s.Twins.MergeTwin(ctx, m.DeviceID, m.ModuleID, m.IfMatch, m.Tags, m.Desired)
		}
	}

	var out []BulkError
	for i, e := range errs {
		if e != nil {
			out = append(out, BulkError{DeviceID: ops[i].Identity.DeviceID, ModuleID: ops[i].Identity.ModuleID, Err: e})
		}
	}
	return out, nil
}

// prepare validates an entry before the transaction: ids, and the fields it
// writes (with keys generated for a SAS identity that gave none).
func (s *Service) prepare(op *BulkOp) error {
	id := op.Identity
	if err := ValidateID("DeviceId", id.DeviceID); err != nil {
		return err
	}
	if id.ModuleID != "" {
		if err := ValidateID("ModuleId", id.ModuleID); err != nil {
			return err
		}
	}
	if len(op.Reported) > 0 {
		return iothub.Errorf(iothub.ArgumentInvalid, "Reported properties are read-only for the service and cannot be updated.")
	}
	switch op.Mode {
	case Delete, DeleteIfMatchETag, UpdateTwin, UpdateTwinIfMatchETag:
		return nil
	}
	// Validate with normalize on a copy holding the given auth; a nil auth
	// on update keeps the current credentials, decided in the transaction.
	tmp := *id
	if op.Auth != nil {
		tmp.Auth = *op.Auth
	}
	if err := s.normalize(&tmp); err != nil {
		return err
	}
	if id.Status == "" {
		tmp.Status = "" // keep the current status on update
	}
	if op.Auth != nil || op.Mode == Create {
		a := tmp.Auth
		op.Auth = &a
	}
	*id = tmp
	return nil
}

// decide is the per-entry rule, run inside the store transaction with the
// current identity (nil when absent).
func (s *Service) decide(op *BulkOp, cur *Identity) (Change, error) {
	in := op.Identity
	k := Key{in.DeviceID, in.ModuleID}
	etagCheck := func() error {
		if !iothub.MatchETag(op.ETag, ETagString(cur.ETag)) || strings.TrimSpace(op.ETag) == "" {
			return iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, ETag may be invalid.")
		}
		return nil
	}
	switch op.Mode {
	case Delete, DeleteIfMatchETag:
		if cur == nil {
			return Change{}, notFound(k.DeviceID, k.ModuleID)
		}
		if op.Mode == DeleteIfMatchETag {
			if err := etagCheck(); err != nil {
				return Change{}, err
			}
		}
		return Change{Kind: Remove}, nil
	case Create:
		if cur != nil {
			return Change{}, alreadyExists(k)
		}
		return Change{Kind: Insert, Identity: s.fresh(op)}, nil
	case Update, UpdateIfMatchETag:
		if cur == nil {
			return Change{}, notFound(k.DeviceID, k.ModuleID)
		}
		if op.Mode == UpdateIfMatchETag {
			if err := etagCheck(); err != nil {
				return Change{}, err
			}
		}
		return Change{Kind: Replace, Identity: s.merged(op, cur)}, nil
	case CreateOrUpdate, CreateOrUpdateIfMatchETag:
		if cur == nil {
			return Change{Kind: Insert, Identity: s.fresh(op)}, nil
		}
		if op.Mode == CreateOrUpdateIfMatchETag {
			if err := etagCheck(); err != nil {
				return Change{}, err
			}
		}
		return Change{Kind: Replace, Identity: s.merged(op, cur)}, nil
	}
	return Change{}, iothub.Errorf(iothub.ArgumentInvalid, "Invalid importMode '%s'.", op.Mode)
}

func alreadyExists(k Key) error {
	if k.ModuleID != "" {
		return iothub.Errorf(iothub.ModuleAlreadyExistsOnDevice, "A module with ID '%s' already exists on device '%s'.", k.ModuleID, k.DeviceID)
	}
	return iothub.Errorf(iothub.DeviceAlreadyExists, "A device with ID '%s' is already registered.", k.DeviceID)
}

// fresh builds a new identity from an entry.
func (s *Service) fresh(op *BulkOp) *Identity {
	id := *op.Identity
	if id.Status == "" {
		id.Status = StatusEnabled
	}
	if op.Auth != nil {
		id.Auth = *op.Auth
	} else {
		id.Auth = Authentication{Type: AuthSAS, PrimaryKey: NewKey(), SecondaryKey: NewKey()}
	}
	id.GenerationID = generationID(s.now())
	if id.IotEdge && !id.IsModule() {
		// Bulk entries do not name parents here; an edge device still gets
		// its own scope, as from a single create.
		id.DeviceScope = EdgeScope(id.DeviceID, id.GenerationID)
	}
	id.ConnectionState = Disconnected
	return &id
}

// merged applies an entry's fields to the current identity.
func (s *Service) merged(op *BulkOp, cur *Identity) *Identity {
	out := *cur
	in := op.Identity
	if in.Status != "" && in.Status != cur.Status {
		out.Status = in.Status
		out.StatusUpdatedTime = s.now()
	}
	out.StatusReason = in.StatusReason
	if op.Auth != nil {
		out.Auth = *op.Auth
	}
	out.IotEdge = in.IotEdge
	if in.ManagedBy != "" {
		out.ManagedBy = in.ManagedBy
	}
	if in.DeviceScope != "" {
		out.DeviceScope = in.DeviceScope
	}
	if in.ParentScopes != nil {
		out.ParentScopes = in.ParentScopes
	}
	return &out
}
