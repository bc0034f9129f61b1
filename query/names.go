package query

import "strings"

// twinSystem lists the twin's top-level properties whose names match
// case-insensitively (the hub accepts `SELECT DeviceId`, digest §6), plus the
// structural names tags and properties.
var twinSystem = canonicalSet("deviceId", "moduleId", "status", "statusReason", "connectionState",
	"lastActivityTime", "statusUpdateTime", "etag", "version", "cloudToDeviceMessageCount",
	"authenticationType", "capabilities", "modelId", "deviceEtag", "tags", "properties",
	"x509Thumbprint", "deviceScope", "parentScopes")

// jobFields lists the fields of a devices.jobs record (digest §3.8).
var jobFields = canonicalSet("deviceId", "moduleId", "jobId", "jobType", "status", "startTimeUtc",
	"endTimeUtc", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "outcome", "error")

// jobAliases maps the names the hub's documentation uses in job filters to
// the names in the records (digest §3.8).
var jobAliases = map[string]string{
	"createdtimeutc":     "createdDateTimeUtc",
	"lastupdatedtimeutc": "lastUpdatedDateTimeUtc",
}

func canonicalSet(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}

// canonical strips the collection prefix from a path as written and spells
// the case-insensitive names canonically.
func canonical(from Collection, segs []string) Path {
	prefix := []string{"devices"}
	switch from {
	case Modules:
		prefix = []string{"devices", "modules"}
	case Jobs:
		prefix = []string{"devices", "jobs"}
	}
	if len(segs) > len(prefix) && hasPrefixFold(segs, prefix) {
		segs = segs[len(prefix):]
	}
	p := make(Path, len(segs))
	copy(p, segs)
	if from == Jobs {
		if n, ok := jobFields[strings.ToLower(p[0])]; ok {
			p[0] = n
		} else if n, ok := jobAliases[strings.ToLower(p[0])]; ok {
			p[0] = n
		}
		return p
	}
	if n, ok := twinSystem[strings.ToLower(p[0])]; ok {
		p[0] = n
	}
	switch {
	case len(p) >= 2 && p[0] == "properties":
		switch strings.ToLower(p[1]) {
		case "desired":
			p[1] = "desired"
		case "reported":
			p[1] = "reported"
		default:
			return p
		}
		if len(p) >= 3 {
			switch strings.ToLower(p[2]) {
			case "$metadata":
				p[2] = "$metadata"
			case "$version":
				p[2] = "$version"
			}
		}
	case len(p) >= 2 && p[0] == "capabilities" && strings.EqualFold(p[1], "iotEdge"):
		p[1] = "iotEdge"
	}
	return p
}

func hasPrefixFold(segs, prefix []string) bool {
	for i, s := range prefix {
		if !strings.EqualFold(segs[i], s) {
			return false
		}
	}
	return true
}
