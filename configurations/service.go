package configurations

import (
	"context"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Config tunes the service.
type Config struct {
	// MaxConfigurations is the hub's limit (100 on paid tiers).
	MaxConfigurations int
	// Interval is how often every configuration is evaluated again, so twins
	// whose tags or reported properties changed come into or out of scope.
	// The hub runs every five minutes; a change to a configuration runs at
	// once in both.
	Interval time.Duration
	// BatchSize bounds the twins patched in one transaction.
	BatchSize int
	// Clock schedules the evaluations; nil means the wall clock. Now, when
	// nil, reads it.
	Clock clock.Clock
	Now   func() time.Time
	// Logger records failed runs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig is the hub's limit and an interval short enough for local
// work.
func DefaultConfig() Config {
	return Config{MaxConfigurations: 100, Interval: 5 * time.Second, BatchSize: 1000}
}

// Deps are the service's collaborators; all are required.
type Deps struct {
	Store   Store
	Targets Targets
	Twins   Twins
}

// Service manages configurations and keeps twins in line with them: a
// background loop evaluates every configuration after each change and every
// Interval.
type Service struct {
	d   Deps
	cfg Config
	log *slog.Logger

	// runMu serializes evaluation runs and deletes, which both change what
	// twins carry.
	runMu sync.Mutex

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool
	started   bool
}

// NewService returns a service; Start begins its background loop.
func NewService(d Deps, cfg Config) (*Service, error) {
	if err := iothub.CheckDeps("configurations", d); err != nil {
		return nil, err
	}
	def := DefaultConfig()
	if cfg.MaxConfigurations <= 0 {
		cfg.MaxConfigurations = def.MaxConfigurations
	}
	if cfg.Interval <= 0 {
		cfg.Interval = def.Interval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = def.BatchSize
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Now == nil {
		cfg.Now = cfg.Clock.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{d: d, cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start runs the evaluation loop until Close.
func (s *Service) Start() {
	s.started = true
	go s.loop()
}

// Close stops the loop and waits for a run in progress to end; later
// writes fail with iothub.ErrClosed.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		if s.started {
			<-s.done
		}
	})
	return nil
}

func (s *Service) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := s.cfg.Clock.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C():
		}
		if err := s.Evaluate(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("configuration run failed", "error", err)
		}
	}
}

// changed asks the loop for a run soon; runs coalesce.
func (s *Service) changed() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Get returns a configuration.
func (s *Service) Get(ctx context.Context, id string) (*Configuration, error) {
	return s.d.Store.Get(ctx, id)
}

// List returns up to top configurations (all when top <= 0).
func (s *Service) List(ctx context.Context, top int) ([]*Configuration, error) {
	all, err := s.d.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	if top > 0 && len(all) > top {
		all = all[:top]
	}
	return all, nil
}

// Put creates c, or replaces the mutable parts of an existing one (labels,
// target condition, priority, metric queries). ifMatch is the If-Match
// header: without one an existing id is a conflict (409401); with one it
// must match the stored etag ("*" matches any) or 412001. The content of an
// existing configuration cannot change (400403). created tells which
// happened.
func (s *Service) Put(ctx context.Context, c *Configuration, ifMatch string) (out *Configuration, created bool, err error) {
	if s.closed.Load() {
		return nil, false, iothub.ErrClosed
	}
	if err := ValidateID(c.ID); err != nil {
		return nil, false, err
	}
	if err := c.validate(); err != nil {
		return nil, false, err
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = "1.0"
	}
	now := s.cfg.Now().UTC()
	if ifMatch == "" {
		c.CreatedTime, c.LastUpdatedTime, c.ETag = now, now, 1
		c.SystemResults = map[string]int64{MetricTargeted: 0, MetricApplied: 0}
		c.MetricResults = map[string]int64{}
		if err := s.d.Store.Create(ctx, c, s.cfg.MaxConfigurations); err != nil {
			return nil, false, err
		}
		s.changed()
		return c, true, nil
	}
	out, err = s.d.Store.Update(ctx, c.ID, func(old *Configuration) error {
		if !iothub.MatchETag(ifMatch, FormatETag(old.ETag)) {
			return iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, ETag may be invalid.")
		}
		if !sameContent(old.Content, c.Content) {
			return iothub.Errorf(iothub.CannotModifyImmutableConfigurationContent, "The content of configuration '%s' cannot be modified.", c.ID)
		}
		old.SchemaVersion = c.SchemaVersion
		old.Labels = c.Labels
		old.TargetCondition = c.TargetCondition
		old.Priority = c.Priority
		old.MetricQueries = c.MetricQueries
		old.LastUpdatedTime = now
		old.ETag++
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	s.changed()
	return out, false, nil
}

// Delete removes a configuration after taking its content off the twins that
// carry it; the next run lets the next configuration in line take them.
// ifMatch as in Put ("" matches any).
func (s *Service) Delete(ctx context.Context, id, ifMatch string) error {
	if s.closed.Load() {
		return iothub.ErrClosed
	}
	s.runMu.Lock()
	defer s.runMu.Unlock()
	c, err := s.d.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	if !iothub.MatchETag(ifMatch, FormatETag(c.ETag)) {
		return iothub.Errorf(iothub.PreconditionFailed, "PreconditionFailed, ETag may be invalid.")
	}
	applied, err := s.d.Store.Applied(ctx)
	if err != nil {
		return err
	}
	var keys []twins.Key
	for k, cid := range applied {
		if cid == id {
			keys = append(keys, k)
		}
	}
	if err := s.remove(ctx, c, keys); err != nil {
		return err
	}
	if err := s.d.Store.Delete(ctx, id); err != nil {
		return err
	}
	s.changed()
	return nil
}

// TestQueries checks a target condition and custom metric queries without
// storing anything: the hub's POST /configurations/testQueries. Errors are
// reported in the result, not returned.
func (s *Service) TestQueries(targetCondition string, metrics map[string]string) (targetErr string, metricErrs map[string]string) {
	metricErrs = map[string]string{}
	c := &Configuration{TargetCondition: targetCondition}
	if moduleWhere(targetCondition) != targetCondition {
		c.Content.ModuleContent = map[string]any{desiredPrefix: map[string]any{}}
	}
	if _, err := c.targetQuery(); err != nil {
		targetErr = iothub.MessageOf(err)
	}
	for name, text := range metrics {
		if _, err := metricQuery(text); err != nil {
			metricErrs[name] = iothub.MessageOf(err)
		}
	}
	return targetErr, metricErrs
}

// ApplyOnDevice writes content to a device's twins at once, without a
// configuration (the hub's applyConfigurationContent, used for IoT Edge):
// deviceContent on the device twin, modulesContent on each named module
// twin, which must exist.
func (s *Service) ApplyOnDevice(ctx context.Context, deviceID string, content Content) error {
	c := &Configuration{Content: content}
	if len(content.DeviceContent) == 0 && len(content.ModulesContent) == 0 && len(content.ModuleContent) == 0 {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "The configuration content is empty.")
	}
	if len(content.ModuleContent) > 0 {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "moduleContent cannot be applied to a device; use modulesContent.")
	}
	c.Content.ModulesContent = nil
	if err := c.validate(); err != nil {
		return err
	}
	if p, _ := desiredPatch(content.DeviceContent); p != nil {
		if _, err := s.d.Twins.PatchService(ctx, twins.Key{DeviceID: deviceID}, "*", twins.ServicePatch{Desired: p}); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(content.ModulesContent))
	for n := range content.ModulesContent {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		sec, ok := content.ModulesContent[name].(map[string]any)
		if !ok {
			return iothub.Errorf(iothub.InvalidConfigurationContent, "modulesContent.%s must be an object.", name)
		}
		p, err := desiredPatch(sec)
		if err != nil {
			return err
		}
		if p == nil {
			continue
		}
		if _, err := s.d.Twins.PatchService(ctx, twins.Key{DeviceID: deviceID, ModuleID: name}, "*", twins.ServicePatch{Desired: p}); err != nil {
			return err
		}
	}
	return nil
}

// Evaluate runs every configuration once: it finds the twins each targets,
// gives each twin the content of the configuration that wins it (highest
// priority, then newest), takes content away from twins no longer won by
// the configuration they carry, and stores the metrics.
func (s *Service) Evaluate(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	cfgs, err := s.d.Store.List(ctx)
	if err != nil {
		return err
	}
	byID := make(map[string]*Configuration, len(cfgs))
	targeted := make(map[string]int64, len(cfgs))
	winner := map[twins.Key]*Configuration{}
	for _, c := range cfgs {
		byID[c.ID] = c
		if len(c.content()) == 0 {
			continue // modulesContent: stored, applied only by ApplyOnDevice
		}
		q, err := c.targetQuery()
		if err != nil || q == nil {
			continue
		}
		keys, err := s.d.Targets.Select(ctx, q)
		if err != nil {
			s.log.Warn("configuration target condition failed", "configuration", c.ID, "error", err)
			continue
		}
		targeted[c.ID] = int64(len(keys))
		for _, k := range keys {
			if w := winner[k]; w == nil || wins(c, w) {
				winner[k] = c
			}
		}
	}

	applied, err := s.d.Store.Applied(ctx)
	if err != nil {
		return err
	}
	leaving := map[string][]twins.Key{}
	for k, id := range applied {
		if w := winner[k]; w == nil || w.ID != id {
			leaving[id] = append(leaving[id], k)
		}
	}
	for _, id := range sortedKeys(leaving) {
		keys := leaving[id]
		if c := byID[id]; c != nil {
			if err := s.remove(ctx, c, keys); err != nil {
				return err
			}
		} else if err := s.d.Store.SetApplied(ctx, keys, ""); err != nil {
			return err
		}
		for _, k := range keys {
			delete(applied, k)
		}
	}

	arriving := map[string][]twins.Key{}
	for k, w := range winner {
		if applied[k] != w.ID {
			arriving[w.ID] = append(arriving[w.ID], k)
		}
	}
	for _, id := range sortedKeys(arriving) {
		done, err := s.apply(ctx, byID[id], arriving[id])
		if err != nil {
			return err
		}
		for _, k := range done {
			applied[k] = id
		}
	}

	appliedCount := map[string]int64{}
	for _, id := range applied {
		appliedCount[id]++
	}
	for _, c := range cfgs {
		custom := make(map[string]int64, len(c.MetricQueries))
		for name, text := range c.MetricQueries {
			q, err := metricQuery(text)
			if err != nil {
				continue
			}
			n, err := s.d.Targets.Count(ctx, q)
			if err != nil {
				s.log.Warn("configuration metric failed", "configuration", c.ID, "metric", name, "error", err)
				continue
			}
			custom[name] = n
		}
		system := map[string]int64{MetricTargeted: targeted[c.ID], MetricApplied: appliedCount[c.ID]}
		if err := s.d.Store.SetMetrics(ctx, c.ID, system, custom); err != nil && iothub.CodeOf(err) != iothub.ConfigurationNotFound {
			return err
		}
	}
	return nil
}

// apply writes c's content to keys in batches and records it; it returns
// the keys that now carry c (a twin that vanished or refused the patch is
// left out and tried again next run).
func (s *Service) apply(ctx context.Context, c *Configuration, keys []twins.Key) ([]twins.Key, error) {
	patch, err := desiredPatch(c.content())
	if err != nil {
		return nil, err
	}
	sortKeys(keys)
	var done []twins.Key
	for start := 0; start < len(keys); start += s.cfg.BatchSize {
		batch := keys[start:min(start+s.cfg.BatchSize, len(keys))]
		errs, err := s.d.Twins.PatchMany(ctx, batch, twins.ServicePatch{Desired: patch})
		if err != nil {
			return nil, err
		}
		ok := batch[:0:0]
		for i, k := range batch {
			if errs[i] == nil {
				ok = append(ok, k)
			} else {
				s.log.Debug("configuration content not applied", "configuration", c.ID, "device", k.DeviceID, "module", k.ModuleID, "error", errs[i])
			}
		}
		if err := s.d.Store.SetApplied(ctx, ok, c.ID); err != nil {
			return nil, err
		}
		done = append(done, ok...)
	}
	return done, nil
}

// remove takes c's content off keys and forgets that they carried it.
func (s *Service) remove(ctx context.Context, c *Configuration, keys []twins.Key) error {
	patch := removalPatch(c.content())
	sortKeys(keys)
	for start := 0; start < len(keys); start += s.cfg.BatchSize {
		batch := keys[start:min(start+s.cfg.BatchSize, len(keys))]
		if len(patch) > 0 {
			// A twin that is gone or refuses the patch is forgotten all the
			// same: there is nothing left to take back.
			if _, err := s.d.Twins.PatchMany(ctx, batch, twins.ServicePatch{Desired: patch}); err != nil {
				return err
			}
		}
		if err := s.d.Store.SetApplied(ctx, batch, ""); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string][]twins.Key) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortKeys(keys []twins.Key) {
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].DeviceID != keys[j].DeviceID {
			return keys[i].DeviceID < keys[j].DeviceID
		}
		return keys[i].ModuleID < keys[j].ModuleID
	})
}
