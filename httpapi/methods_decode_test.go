package httpapi

import (
	"encoding/json"
	"reflect"
	"testing"
)

var invokeBodies = []string{
	`{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0}`,
	`{"methodName":"m","payload":""}`, // Python: no payload
	`{"methodName":"m"}`,
	` { "METHODNAME" : "m" , "Payload" : [1, {"a":"}"}, "x\"y"] , "responsetimeoutinseconds" : -5 } `,
	`{"methodName":"m","payload":null,"responseTimeoutInSeconds":300}`,
	`{"methodName":"m","payload":"a\"b\\","connectTimeoutInSeconds":-0}`,
	`{"methodName":"m","payload":1.5e3}`,
	`{"methodName":"m","payload":true,"other":{"deep":[[],{}]},"n":null}`,
	`{"methodName":"a","methodName":"b","payload":1,"payload":2}`,
	`{}`,
	"{\"methodName\":\"m\",\n\t\"payload\":\r\n{}}",
	// Left to json.Unmarshal (false), or errors.
	`{"methodName":"m\u00e9"}`,
	`{"methodName":"\u006d"}`,
	`{"methodName":"é"}`,
	`{"méthodName":"m"}`,
	`{"method\u004eame":"m"}`,
	`{"methodName":null}`,
	`{"methodName":5}`,
	`{"responseTimeoutInSeconds":30.0}`,
	`{"responseTimeoutInSeconds":3e1}`,
	`{"responseTimeoutInSeconds":"30"}`,
	`{"responseTimeoutInSeconds":null}`,
	`{"responseTimeoutInSeconds":99999999999999999999}`,
	`{"connectTimeoutInSeconds":123456789012345678}`,
	`[]`, `"x"`, `null`, `{`, `{"methodName":"m"}x`, `{"methodName":"m",}`, `{"payload":01}`,
	`{"methodName":"m","payload":{"a":1}`, "{\"methodName\":\"a\x01\"}", "{\"methodName\":\"\xff\"}",
	`{"methodName":"m"} x`, `{"a":1,}`, `{,}`, `{"a" 1}`, `{"a":}`, `{"payload":[1,2}`, `{"payload":tru}`,
	`{"responseTimeoutInSeconds":-}`, `{"responseTimeoutInSeconds":00}`, `{"payload":"\x"}`, `{"payload":1 2}`,
	`{"payload":{"a":1}}}`, `{"payload":"}"`, "{\"payload\":\"\xff\"}",
}

// The fast decoder gives exactly what json.Unmarshal gives, or declines.
func TestDecodeInvokeRequest_SameAsUnmarshal(t *testing.T) {
	fast := 0
	for _, body := range invokeBodies {
		if checkInvokeDecode(t, []byte(body)) {
			fast++
		}
	}
	if fast < 11 {
		t.Errorf("only %d bodies took the fast path; the usual ones must", fast)
	}
}

func FuzzDecodeInvokeRequest(f *testing.F) {
	for _, b := range invokeBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkInvokeDecode(t, body) })
}

func checkInvokeDecode(t *testing.T, body []byte) bool {
	t.Helper()
	var got invokeRequest
	if !decodeInvokeRequest(body, &got) {
		return false
	}
	var want invokeRequest
	if err := json.Unmarshal(body, &want); err != nil {
		t.Errorf("%q: fast path accepted what json.Unmarshal refuses: %v", body, err)
		return true
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q: fast path %+v, json.Unmarshal %+v", body, got, want)
	}
	return true
}

func BenchmarkDecodeInvokeRequest(b *testing.B) {
	body := []byte(`{"methodName":"echo","payload":{"n":1},"responseTimeoutInSeconds":30}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in invokeRequest
			if !decodeInvokeRequest(body, &in) {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in invokeRequest
			if err := json.Unmarshal(body, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
