package twins

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// ServicePatch is a service-side twin PATCH (digest §3.4): the tags and
// desired properties to merge. A nil map means the member was absent; a
// non-nil empty map is present and counts as a write.
type ServicePatch struct {
	Tags    map[string]any
	Desired map[string]any
	// Reported carries properties.reported from the request body, if any,
	// without its $version and $metadata. Reported properties are read-only
	// for the service, so a non-empty Reported is rejected.
	Reported map[string]any
	// ClearDesired is "properties":{"desired":null}: the hub removes every
	// desired property (a write: $version goes up and the device hears of
	// each removal as a null). Desired must then be nil.
	ClearDesired bool
}

// lockStripes is the number of per-twin mutexes. Twins hash onto them, so
// unrelated twins rarely wait on each other.
const lockStripes = 256

// Service applies the hub's twin rules over a Store and tells a Notifier
// about desired changes. Both transports and the jobs runner go through one
// Service per hub: its per-twin locks are what keeps desired notifications in
// version order.
//
// Lock order: a Service holds one per-twin stripe lock while it runs
// Store.Update (and so the store's transaction and any store locks) and then
// Notifier.DesiredChanged. Stripe → store, stripe → notifier; never the
// reverse. Hence a Notifier must not call into the Service, and a caller must
// not call the Service while holding a lock its Notifier takes.
//
// A Service must not be copied after first use.
type Service struct {
	Deps
	cfg   Config
	locks [lockStripes]sync.Mutex
}

// Deps are the Service's collaborators, all required.
type Deps struct {
	// Store persists the twins.
	Store Store
	// Notifier hears about every desired change.
	Notifier Notifier
}

// Config configures the Service.
type Config struct {
	// Now is the clock for $metadata; nil means time.Now.
	Now func() time.Time
	// Limits are the twin limits; zero fields take the hub's values.
	Limits Limits
}

// NewService returns a Service over deps.
func NewService(deps Deps, cfg Config) (*Service, error) {
	if err := iothub.CheckDeps("twins", deps); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits = cfg.Limits.withDefaults()
	return &Service{Deps: deps, cfg: cfg}, nil
}

// Get returns the twin. Errors: 404001 DeviceNotFound, 404010 ModuleNotFound.
func (s *Service) Get(ctx context.Context, key Key) (*Twin, error) {
	return s.Store.Get(ctx, key)
}

// PatchService merges a service patch into the twin (PATCH /twins/{id},
// digest §4.3, §4.4). Tags and desired merge recursively, null deletes. When
// the patch carries tags or desired, the twin version and etag go up by one;
// when it carries desired, desired $version goes up by one, $metadata is
// stamped along the patched paths and the Notifier gets the patch.
// A patch with neither only checks existence and ifMatch.
//
// ifMatch is the If-Match header: "" or "*" (quoted or not) match anything,
// otherwise it must equal the twin etag (quotes and a W/ prefix are ignored).
//
// Errors, with nothing changed: 400004 ArgumentInvalid for reported
// properties in the patch, a bad name, value or depth, or a section that
// would grow past its size limit; 412001 PreconditionFailed for a stale
// ifMatch; 404001/404010 when the twin does not exist.
func (s *Service) PatchService(ctx context.Context, key Key, ifMatch string, p ServicePatch) (*Twin, error) {
	lim := s.cfg.Limits
	tags, desired, err := lim.checkServicePatch(p)
	if err != nil {
		return nil, err
	}
	if tags == nil && desired == nil && !p.ClearDesired {
		t, err := s.Store.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if !iothub.MatchETag(ifMatch, FormatETag(t.ETag)) {
			return nil, preconditionFailed()
		}
		return t, nil
	}

	mu := s.lock(key)
	defer mu.Unlock()
	ts := FormatTime(s.now())
	t, err := s.Store.Update(ctx, key, func(t *Twin) error {
		if !iothub.MatchETag(ifMatch, FormatETag(t.ETag)) {
			return preconditionFailed()
		}
		if p.ClearDesired {
			desired = removeAll(t.Desired.Data)
		}
		return applyServicePatch(t, tags, desired, ts, lim)
	})
	if err != nil {
		return nil, err
	}
	if desired != nil {
		s.notify(key, desired, t.Desired.Version)
	}
	return t, nil
}

// removeAll is the merge patch that deletes every member of data: what
// "desired":null means. It is never nil, so it counts as a desired write.
func removeAll(data map[string]any) map[string]any {
	patch := make(map[string]any, len(data))
	for k := range data {
		patch[k] = nil
	}
	return patch
}

// checkServicePatch validates a service patch and returns its normalized
// tags and desired sections (nil when absent).
func (l Limits) checkServicePatch(p ServicePatch) (tags, desired map[string]any, err error) {
	if len(p.Reported) > 0 {
		return nil, nil, invalid("Reported properties are read-only for the service and cannot be updated.")
	}
	if p.ClearDesired && p.Desired != nil {
		return nil, nil, invalid("properties.desired cannot be both null and an object.")
	}
	tags, desired = NormalizeMap(p.Tags), NormalizeMap(p.Desired)
	if err := l.validatePatch(sectionTags, tags); err != nil {
		return nil, nil, err
	}
	if err := l.validatePatch(sectionDesired, desired); err != nil {
		return nil, nil, err
	}
	return tags, desired, nil
}

// applyServicePatch merges already validated and normalized tags and
// desired into t, with the version, etag and $metadata rules of PatchService.
func applyServicePatch(t *Twin, tags, desired map[string]any, ts string, lim Limits) error {
	newTags := t.Tags
	if tags != nil {
		newTags = copyMap(t.Tags)
		if newTags == nil {
			newTags = map[string]any{}
		}
		merge(newTags, map[string]any{}, tags, stamp{})
		if err := checkSize(sectionTags, newTags, lim.MaxTagsBytes); err != nil {
			return err
		}
	}
	newDesired := t.Desired
	if desired != nil {
		newDesired = copyProperties(t.Desired)
		newDesired.Version++
		merge(newDesired.Data, newDesired.Metadata, desired, stamp{ts: ts, version: newDesired.Version, desired: true})
		if err := checkSize(sectionDesired, newDesired.Data, lim.MaxDesiredBytes); err != nil {
			return err
		}
	}
	t.Tags, t.Desired = newTags, newDesired
	t.Version++
	t.ETag++
	return nil
}

// BatchStore is a Store that can update many twins in one transaction.
type BatchStore interface {
	// UpdateMany calls fn on each twin of keys and saves those for which fn
	// returned nil, all in one transaction. fn sees only the service-side
	// parts of the twin (Key, Tags, Desired, Version, ETag); Identity and
	// Reported are neither loaded nor saved, which keeps a twin job from
	// decoding and rewriting what it does not touch. errs[i] is the outcome
	// of keys[i] (not found, or fn's error); err is a failure of the whole
	// batch, in which case nothing was saved.
	UpdateMany(ctx context.Context, keys []Key, fn func(*Twin) error) (updated []*Twin, errs []error, err error)
}

// ReportedStore is a Store that can update the device side of a twin
// alone, which is all a reported patch touches.
type ReportedStore interface {
	// UpdateReported is Update for a reported patch: fn sees only Key,
	// Reported and Version, and only Reported and Version are saved. Tags,
	// Desired, Identity and ETag are neither loaded nor saved, so a device
	// reporting every second does not decode and rewrite what the service
	// owns. Same errors as Update; the returned twin holds what was saved.
	UpdateReported(ctx context.Context, key Key, fn func(*Twin) error) (*Twin, error)
}

// PatchMany merges one service patch into many twins, as a
// scheduleUpdateTwin job does, with PatchService's rules and an If-Match of
// "*". With a BatchStore it costs one transaction for the whole batch. It
// returns one error per key (nil on success), or err when the patch is
// invalid or the batch failed as a whole. Desired notifications go out
// after the commit, in version order per twin.
func (s *Service) PatchMany(ctx context.Context, keys []Key, p ServicePatch) (errs []error, err error) {
	lim := s.cfg.Limits
	tags, desired, err := lim.checkServicePatch(p)
	if err != nil {
		return nil, err
	}
	bs, ok := s.Store.(BatchStore)
	if !ok || tags == nil && desired == nil || p.ClearDesired {
		// Clearing desired patches each twin differently: one by one.
		errs = make([]error, len(keys))
		for i, k := range keys {
			_, errs[i] = s.PatchService(ctx, k, "*", ServicePatch{Tags: p.Tags, Desired: p.Desired, ClearDesired: p.ClearDesired})
		}
		return errs, nil
	}
	unlock := s.lockMany(keys)
	defer unlock()
	ts := FormatTime(s.now())
	updated, errs, err := bs.UpdateMany(ctx, keys, func(t *Twin) error {
		return applyServicePatch(t, tags, desired, ts, lim)
	})
	if err != nil {
		return nil, err
	}
	if desired != nil {
		for _, t := range updated {
			s.notify(t.Key, desired, t.Desired.Version)
		}
	}
	return errs, nil
}

// ReplaceService replaces tags and desired wholesale (PUT /twins/{id},
// digest §3.4). A nil tags clears the tags (a never-tagged twin stays
// without them); a nil desired clears desired. Nulls in the documents are
// dropped. Twin version, etag and desired $version each go up by one,
// desired $metadata is rebuilt with the new stamp, and the Notifier gets the
// full new desired document. Reported properties are untouched. Same
// ifMatch rules and errors as PatchService.
func (s *Service) ReplaceService(ctx context.Context, key Key, ifMatch string, tags, desired map[string]any) (*Twin, error) {
	lim := s.cfg.Limits
	tags, desired, err := lim.checkServicePatch(ServicePatch{Tags: tags, Desired: desired})
	if err != nil {
		return nil, err
	}

	mu := s.lock(key)
	defer mu.Unlock()
	ts := FormatTime(s.now())
	t, err := s.Store.Update(ctx, key, func(t *Twin) error {
		if !iothub.MatchETag(ifMatch, FormatETag(t.ETag)) {
			return preconditionFailed()
		}
		var newTags map[string]any
		if tags != nil || t.Tags != nil {
			newTags = map[string]any{}
			merge(newTags, map[string]any{}, tags, stamp{})
			if err := checkSize(sectionTags, newTags, lim.MaxTagsBytes); err != nil {
				return err
			}
		}
		newDesired := Properties{Data: map[string]any{}, Metadata: map[string]any{}, Version: t.Desired.Version + 1}
		merge(newDesired.Data, newDesired.Metadata, desired, stamp{ts: ts, version: newDesired.Version, desired: true})
		if err := checkSize(sectionDesired, newDesired.Data, lim.MaxDesiredBytes); err != nil {
			return err
		}
		t.Tags, t.Desired = newTags, newDesired
		t.Version++
		t.ETag++
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.notify(key, t.Desired.Data, t.Desired.Version)
	return t, nil
}

// PatchReported merges a device's reported-properties patch
// ($iothub/twin/PATCH/properties/reported/, digest §1.8) and returns the new
// reported $version. Reported $version and twin version go up by one; the
// twin etag does not change (digest §4.4). Errors: 400004 ArgumentInvalid
// for a nil patch, a bad name, value or depth, or reported growing past its
// size limit; 404001/404010 when the twin does not exist. Nothing changes on
// error.
func (s *Service) PatchReported(ctx context.Context, key Key, patch map[string]any) (int64, error) {
	lim := s.cfg.Limits
	if patch == nil {
		return 0, invalid("The reported properties patch must be a JSON object.")
	}
	patch = NormalizeMap(patch)
	if err := lim.validatePatch(sectionReported, patch); err != nil {
		return 0, err
	}

	update := s.Store.Update
	if rs, ok := s.Store.(ReportedStore); ok {
		update = rs.UpdateReported
	}
	mu := s.lock(key)
	defer mu.Unlock()
	ts := FormatTime(s.now())
	t, err := update(ctx, key, func(t *Twin) error {
		r := copyProperties(t.Reported)
		r.Version++
		merge(r.Data, r.Metadata, patch, stamp{ts: ts})
		if err := checkSize(sectionReported, r.Data, lim.MaxReportedBytes); err != nil {
			return err
		}
		t.Reported = r
		t.Version++
		return nil
	})
	if err != nil {
		return 0, err
	}
	return t.Reported.Version, nil
}

func preconditionFailed() error {
	return iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, ETag may be invalid.")
}

// notify hands the Notifier its own copy of patch. The caller holds the
// twin's stripe lock, which orders notifications by version.
func (s *Service) notify(key Key, patch map[string]any, version int64) {
	s.Notifier.DesiredChanged(key, copyMap(patch), version)
}

// lock locks and returns the stripe mutex of key.
func (s *Service) lock(key Key) *sync.Mutex {
	mu := &s.locks[stripe(key)]
	mu.Lock()
	return mu
}

func stripe(key Key) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key.DeviceID))
	h.Write([]byte{0})
	h.Write([]byte(key.ModuleID))
	return h.Sum32() % lockStripes
}

// lockMany locks the stripes of keys in ascending order, so two batches
// cannot deadlock, and a holder of one stripe never waits for another.
func (s *Service) lockMany(keys []Key) (unlock func()) {
	var need [lockStripes]bool
	for _, k := range keys {
		need[stripe(k)] = true
	}
	var held []*sync.Mutex
	for i := range need {
		if need[i] {
			s.locks[i].Lock()
			held = append(held, &s.locks[i])
		}
	}
	return func() {
		for _, mu := range held {
			mu.Unlock()
		}
	}
}

func (s *Service) now() time.Time { return s.cfg.Now() }
