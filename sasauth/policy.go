package sasauth

import "strings"

// Rights are the permissions a shared access policy grants (digest §2.3).
type Rights uint8

const (
	RegistryRead Rights = 1 << iota
	RegistryWrite
	ServiceConnect
	DeviceConnect
)

// Has reports whether r includes every right in need.
func (r Rights) Has(need Rights) bool { return r&need == need }

func (r Rights) String() string {
	var names []string
	for _, x := range []struct {
		r    Rights
		name string
	}{{RegistryRead, "RegistryRead"}, {RegistryWrite, "RegistryWrite"}, {ServiceConnect, "ServiceConnect"}, {DeviceConnect, "DeviceConnect"}} {
		if r.Has(x.r) {
			names = append(names, x.name)
		}
	}
	return strings.Join(names, ", ")
}

// Policy is a hub-level shared access policy.
type Policy struct {
	Name         string
	PrimaryKey   string
	SecondaryKey string
	Rights       Rights
}

// Well-known default keys, published in the README like Azurite's account key:
// the emulator is for local use, and fixed keys let scripts and docs hard-code
// connection strings. --owner-key replaces the iothubowner key.
const (
	DefaultOwnerKey             = "P2ja1D+Ckn3UtCuHYDTO8mnTDonBDe4tGpQE5JTLVhM="
	DefaultServiceKey           = "TFOghtGnnoMwfqpjYTYYVKfRFg1dG+hDXe+uFdnsjks="
	DefaultRegistryReadKey      = "82KnfnxNjrnXv2WGau2omgWaftFucGhjn8zpuRCgLpI="
	DefaultRegistryReadWriteKey = "DXiy3y0eU7duAlKaibPfvMM54004BZV3P3GN5gGxX0M="
	DefaultDeviceKey            = "MNt4aATrA0jVLrmKIkW9l/PJb5PZHphljqcl5XIhttg="
)

// DefaultPolicies returns the hub's five default policies with the
// well-known keys; ownerKey, when not empty, replaces iothubowner's. Each
// policy uses its one key for both the primary and the secondary slot.
func DefaultPolicies(ownerKey string) []Policy {
	if ownerKey == "" {
		ownerKey = DefaultOwnerKey
	}
	mk := func(name, key string, r Rights) Policy {
		return Policy{Name: name, PrimaryKey: key, SecondaryKey: key, Rights: r}
	}
	return []Policy{
		mk("iothubowner", ownerKey, RegistryRead|RegistryWrite|ServiceConnect|DeviceConnect),
		mk("service", DefaultServiceKey, ServiceConnect),
		mk("device", DefaultDeviceKey, DeviceConnect),
		mk("registryRead", DefaultRegistryReadKey, RegistryRead),
		mk("registryReadWrite", DefaultRegistryReadWriteKey, RegistryRead|RegistryWrite),
	}
}
