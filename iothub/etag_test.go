package iothub_test

import (
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// One rule for identity and twin etags; these were the registry's and the
// twins' own tables before the two copies became one.
func TestMatchETag_IdentityETags(t *testing.T) {
	for _, tc := range []struct {
		ifMatch, etag string
		want          bool
	}{
		{"", "MQ==", true},
		{"*", "MQ==", true},
		{`"*"`, "MQ==", true},
		{` "*" `, "MQ==", true},
		{"MQ==", "MQ==", true},
		{`"MQ=="`, "MQ==", true},
		{`W/"MQ=="`, "MQ==", true},
		{`"Mg=="`, "MQ==", false},
		{"Mg==", "MQ==", false},
		{`"mq=="`, "MQ==", false}, // etags are case-sensitive
	} {
		if got := iothub.MatchETag(tc.ifMatch, tc.etag); got != tc.want {
			t.Errorf("MatchETag(%q, %q) = %v, want %v", tc.ifMatch, tc.etag, got, tc.want)
		}
	}
}

func TestMatchETag_TwinETags(t *testing.T) {
	const etag = "AAAAAAAAAAE="
	for _, tc := range []struct {
		ifMatch string
		want    bool
	}{
		{"", true},
		{"*", true},
		{`"*"`, true},
		{etag, true},
		{`"` + etag + `"`, true},
		{`W/"` + etag + `"`, true},
		{` "` + etag + `" `, true},
		{"AAAAAAAAAAI=", false},
		{`"AAAAAAAAAAI="`, false},
		{`"` + etag, false},
	} {
		if got := iothub.MatchETag(tc.ifMatch, etag); got != tc.want {
			t.Errorf("MatchETag(%q) = %v, want %v", tc.ifMatch, got, tc.want)
		}
	}
}
