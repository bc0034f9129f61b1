package twins

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// KeyedPatch is one twin's own service patch in PatchEach, with its
// If-Match ("" or "*" match any etag).
type KeyedPatch struct {
	Key
	IfMatch string
	Patch   ServicePatch
}

// PatchEach applies to each twin its own service patch, with PatchService's
// rules (validation, limits, $metadata, versions, desired notifications).
// With a BatchStore the patches share one transaction: the bulk registry
// API writes the tags and desired properties of up to 100 identities per
// request, and one commit per identity made a million-device import take
// minutes. It returns one error per patch (nil on success); a failure of
// the batch as a whole is every patch's error. A key named twice is patched
// in order.
func (s *Service) PatchEach(ctx context.Context, ps []KeyedPatch) []error {
	errs := make([]error, len(ps))
	bs, ok := s.Store.(BatchStore)
	if !ok {
		for i, p := range ps {
			_, errs[i] = s.PatchService(ctx, p.Key, p.IfMatch, p.Patch)
		}
		return errs
	}
	lim := s.cfg.Limits
	type checked struct {
		tags, desired map[string]any
		ifMatch       string
	}
	batch := map[Key]checked{}
	var keys []Key
	var at []int // position in ps of keys[i]
	var oneByOne []int
	sequential := map[Key]bool{} // keys with a patch in oneByOne: later ones follow it
	for i, p := range ps {
		tags, desired, err := lim.checkServicePatch(p.Patch)
		_, dup := batch[p.Key]
		switch {
		case err != nil:
			errs[i] = err
		case tags == nil && desired == nil || p.Patch.ClearDesired || dup || sequential[p.Key]:
			// An etag check alone, a patch that depends on the twin's
			// current desired members, or a second patch of a twin: one by
			// one after the batch, in order.
			oneByOne = append(oneByOne, i)
			sequential[p.Key] = true
		default:
			batch[p.Key] = checked{tags, desired, p.IfMatch}
			keys = append(keys, p.Key)
			at = append(at, i)
		}
	}
	if len(keys) > 0 {
		unlock := s.lockMany(keys)
		ts := FormatTime(s.now())
		updated, batchErrs, err := bs.UpdateMany(ctx, keys, func(t *Twin) error {
			c := batch[t.Key]
			if !iothub.MatchETag(c.ifMatch, FormatETag(t.ETag)) {
				return preconditionFailed()
			}
			return applyServicePatch(t, c.tags, c.desired, ts, lim)
		})
		for j, i := range at {
			if err != nil {
				errs[i] = err
			} else {
				errs[i] = batchErrs[j]
			}
		}
		for _, t := range updated {
			if c := batch[t.Key]; c.desired != nil {
				s.notify(t.Key, c.desired, t.Desired.Version)
			}
		}
		unlock() // after notifying: notifications go out in version order
	}
	for _, i := range oneByOne {
		_, errs[i] = s.PatchService(ctx, ps[i].Key, ps[i].IfMatch, ps[i].Patch)
	}
	return errs
}

// PatchFresh validates p as PatchService would and returns the function
// that applies it, with PatchService's rules, to the fresh twin a store
// creates with a new identity (NewTwin's contents): bulk creates carrying
// tags or desired properties are written in the identity's own row insert
// instead of being patched afterwards. A new identity has no connected
// device, so there is nobody to notify. Limits that only the merged twin
// can break (sizes) are the returned function's error.
func (s *Service) PatchFresh(p ServicePatch) (func(*Twin) error, error) {
	lim := s.cfg.Limits
	tags, desired, err := lim.checkServicePatch(p)
	if err != nil {
		return nil, err
	}
	ts := FormatTime(s.now())
	return func(t *Twin) error {
		d := desired
		if p.ClearDesired {
			d = removeAll(t.Desired.Data)
		}
		if tags == nil && d == nil {
			return nil
		}
		return applyServicePatch(t, tags, d, ts, lim)
	}, nil
}
