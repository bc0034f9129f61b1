package sqlite

import (
	"encoding/json"
	"testing"
)

func TestEncodeD2CProps_SameAsJSON(t *testing.T) {
	for _, p := range []d2cProps{
		{},
		{Auth: "sas", Gen: "638000000000000000", Tr: "mqtt"},
		{Auth: "x509", Tr: "mqtt-ws", Mid: "m-1", Cid: "c 1", Uid: "u", To: "/devices/d/messages/events", Ct: "application/json", Ce: "utf-8",
			Ctime: 1700000000123456789, Exp: -5},
		{Mid: `quote"d`},
		{Mid: `back\slash`},
		{Mid: "<html>&"},
		{Mid: "tab\there"},
		{Mid: "héllo"},
		{Mid: "\xff"},
		{Mid: "del\x7f"},
		{Auth: "sas", App: map[string]string{"k": "v"}},
		{Auth: "sas", Sys: map[string]string{"dt-subject": "s"}},
		{Ctime: 5},
	} {
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeD2CProps(p)
		if err != nil || string(got) != string(want) {
			t.Errorf("%+v: got %s, %v; want %s", p, got, err, want)
		}
	}
}
