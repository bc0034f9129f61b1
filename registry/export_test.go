package registry

// Normalize exposes normalize to the external tests.
func Normalize(s *Service, id *Identity) error { return s.normalize(id) }
