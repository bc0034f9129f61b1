// Package sdk drives the emulator with the Go SDK github.com/amenzhinsky/iothub
// (MQTT device client, HTTPS service client), unmodified, on the SDK's fixed
// ports 8883 and 443. Run by e2e/sdk/run.sh go, which starts the emulator and
// exports IOTHUB_CONNECTION_STRING and IOTHUB_CA_FILE.
//
// The SDK's AMQP parts (C2D send, feedback, the Event Hub endpoint) are not
// used: the emulator serves no AMQP yet; telemetry is read back from the
// emulator-only GET /_emulator/messages.
package sdk

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/amenzhinsky/iothub/iotdevice"
	iotmqtt "github.com/amenzhinsky/iothub/iotdevice/transport/mqtt"
	"github.com/amenzhinsky/iothub/iotservice"
)

const opTimeout = 30 * time.Second

var (
	serviceCS string
	caPool    *x509.CertPool
	seq       atomic.Int64
)

func TestMain(m *testing.M) {
	serviceCS = os.Getenv("IOTHUB_CONNECTION_STRING")
	caFile := os.Getenv("IOTHUB_CA_FILE")
	if serviceCS == "" || caFile == "" {
		// Not a skip: run.sh always sets both, and a suite that silently
		// passes without an emulator would hide a broken setup.
		fmt.Fprintln(os.Stderr, "IOTHUB_CONNECTION_STRING and IOTHUB_CA_FILE must be set (e2e/sdk/run.sh go sets them)")
		os.Exit(2)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	caPool = x509.NewCertPool()
	if !caPool.AppendCertsFromPEM(pem) {
		fmt.Fprintln(os.Stderr, "no certificate in", caFile)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

func uniqueID(prefix string) string {
	return fmt.Sprintf("go-%s-%d-%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

func tlsConfig() *tls.Config { return &tls.Config{RootCAs: caPool, MinVersion: tls.VersionTLS12} }

func service(t *testing.T) *iotservice.Client {
	t.Helper()
	// WithTLSConfig reaches only the SDK's AMQP side; REST needs its own client.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig()}, Timeout: opTimeout}
	c, err := iotservice.NewFromConnectionString(serviceCS, iotservice.WithTLSConfig(tlsConfig()), iotservice.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// createDevice registers a SAS device and deletes it when the test ends.
func createDevice(t *testing.T, svc *iotservice.Client, id string) *iotservice.Device {
	t.Helper()
	d, err := svc.CreateDevice(ctxT(t), &iotservice.Device{DeviceID: id})
	if err != nil {
		t.Fatalf("CreateDevice %s: %v", id, err)
	}
	t.Cleanup(func() { _ = svc.DeleteDevice(context.Background(), d) })
	return d
}

// connectDevice connects the SDK's MQTT device client (over WebSockets on
// 443 when ws is set) and closes it when the test ends.
func connectDevice(t *testing.T, svc *iotservice.Client, d *iotservice.Device, ws bool) *iotdevice.Client {
	t.Helper()
	cs, err := svc.DeviceConnectionString(d, false)
	if err != nil {
		t.Fatal(err)
	}
	tr := iotmqtt.New(iotmqtt.WithWebSocket(ws), iotmqtt.WithClientOptionsConfig(func(o *paho.ClientOptions) {
		o.SetTLSConfig(tlsConfig())
	}))
	c, err := iotdevice.NewFromConnectionString(tr, cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatalf("device %s connect (ws=%v): %v", d.DeviceID, ws, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRegistry(t *testing.T) {
	svc := service(t)
	ctx := ctxT(t)
	id := uniqueID("reg")
	d := createDevice(t, svc, id)
	if d.Authentication == nil || d.Authentication.SymmetricKey == nil || d.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("created device has no keys: %+v", d)
	}
	got, err := svc.GetDevice(ctx, id)
	if err != nil || got.DeviceID != id || got.Status != iotservice.Enabled || got.GenerationID == "" {
		t.Fatalf("GetDevice = %+v, %v", got, err)
	}
	got.Status, got.StatusReason = iotservice.Disabled, "maintenance"
	upd, err := svc.UpdateDevice(ctx, got)
	if err != nil || upd.Status != iotservice.Disabled || upd.ETag == got.ETag {
		t.Fatalf("UpdateDevice = %+v, %v", upd, err)
	}
	list, err := svc.ListDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range list {
		found = found || x.DeviceID == id
	}
	if !found {
		t.Errorf("ListDevices lacks %s", id)
	}
	m, err := svc.CreateModule(ctx, &iotservice.Module{DeviceID: id, ModuleID: "m1"})
	if err != nil || m.ModuleID != "m1" {
		t.Fatalf("CreateModule = %+v, %v", m, err)
	}
	if mods, err := svc.ListModules(ctx, id); err != nil || len(mods) != 1 {
		t.Errorf("ListModules = %v, %v", mods, err)
	}
	if err := svc.DeleteDevice(ctx, upd); err != nil {
		t.Fatal(err)
	}
	_, err = svc.GetDevice(ctx, id)
	var re *iotservice.RequestError
	if err == nil || !asRequestError(err, &re) || re.Code != http.StatusNotFound {
		t.Errorf("GetDevice after delete: %v, want a 404 RequestError", err)
	}
}

func asRequestError(err error, target **iotservice.RequestError) bool {
	re, ok := err.(*iotservice.RequestError)
	if ok {
		*target = re
	}
	return ok
}

func TestTwins(t *testing.T) {
	svc := service(t)
	id := uniqueID("twin")
	d := createDevice(t, svc, id)
	dev := connectDevice(t, svc, d, false)
	ctx := ctxT(t)

	sub, err := dev.SubscribeTwinUpdates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.UnsubscribeTwinUpdates(sub)

	tw, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: id, ETag: "*",
		Tags:       map[string]interface{}{"building": 43},
		Properties: &iotservice.Properties{Desired: map[string]interface{}{"interval": 60}}})
	if err != nil {
		t.Fatalf("UpdateDeviceTwin: %v", err)
	}
	if tw.Tags["building"] != float64(43) || tw.Properties.Desired["interval"] != float64(60) {
		t.Errorf("twin after update: tags %v desired %v", tw.Tags, tw.Properties.Desired)
	}
	select {
	case s := <-sub.C():
		if s["interval"] != float64(60) || s.Version() != 2 {
			t.Errorf("desired notification %v", s)
		}
	case <-ctx.Done():
		t.Fatal("no desired-properties notification")
	}

	desired, reported, err := dev.RetrieveTwinState(ctx)
	if err != nil || desired["interval"] != float64(60) || reported.Version() != 1 {
		t.Fatalf("RetrieveTwinState = %v %v %v", desired, reported, err)
	}
	v, err := dev.UpdateTwinState(ctx, iotdevice.TwinState{"fw": "1.2"})
	if err != nil || v != 2 {
		t.Fatalf("UpdateTwinState = %d, %v; want version 2", v, err)
	}
	got, err := svc.GetDeviceTwin(ctx, id)
	if err != nil || got.Properties.Reported["fw"] != "1.2" || got.ConnectionState != iotservice.Connected {
		t.Fatalf("GetDeviceTwin = %+v, %v", got, err)
	}
}

func TestMethods(t *testing.T) {
	svc := service(t)
	id := uniqueID("meth")
	d := createDevice(t, svc, id)
	dev := connectDevice(t, svc, d, true) // over WebSockets on 443
	ctx := ctxT(t)
	if err := dev.RegisterMethod(ctx, "reboot", func(p map[string]interface{}) (int, map[string]interface{}, error) {
		return 200, map[string]interface{}{"delay": p["delay"], "ok": true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	res, err := svc.CallDeviceMethod(ctx, id, &iotservice.MethodCall{MethodName: "reboot", ResponseTimeout: 10,
		Payload: map[string]interface{}{"delay": 5}})
	if err != nil {
		t.Fatalf("CallDeviceMethod: %v", err)
	}
	if res.Status != 200 || res.Payload["ok"] != true || res.Payload["delay"] != float64(5) {
		t.Errorf("method result %+v", res)
	}
	offline := createDevice(t, svc, uniqueID("off"))
	if _, err := svc.CallDeviceMethod(ctx, offline.DeviceID, &iotservice.MethodCall{MethodName: "reboot", ResponseTimeout: 5}); err == nil ||
		!strings.Contains(err.Error(), "404103") {
		t.Errorf("method on an offline device: %v, want 404103 DeviceNotOnline", err)
	}
}

func TestTelemetry(t *testing.T) {
	svc := service(t)
	for _, ws := range []bool{false, true} {
		t.Run(fmt.Sprintf("ws=%v", ws), func(t *testing.T) {
			id := uniqueID("tel")
			d := createDevice(t, svc, id)
			dev := connectDevice(t, svc, d, ws)
			ctx := ctxT(t)
			if err := dev.SendEvent(ctx, []byte(`{"temp":21.5}`), iotdevice.WithSendMessageID("mid-1"),
				iotdevice.WithSendProperty("level", "warn"), iotdevice.WithSendQoS(1)); err != nil {
				t.Fatalf("SendEvent: %v", err)
			}
			var msgs []struct {
				DeviceID         string            `json:"deviceId"`
				Body             string            `json:"body"`
				Properties       map[string]string `json:"properties"`
				SystemProperties map[string]string `json:"systemProperties"`
			}
			deadline := time.Now().Add(opTimeout)
			for len(msgs) == 0 && time.Now().Before(deadline) {
				emulatorGET(t, "/_emulator/messages?deviceId="+url.QueryEscape(id), &msgs)
				if len(msgs) == 0 {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if len(msgs) != 1 {
				t.Fatalf("messages from %s: %d, want 1", id, len(msgs))
			}
			m := msgs[0]
			if m.Body != `{"temp":21.5}` || m.Properties["level"] != "warn" || m.SystemProperties["message-id"] != "mid-1" {
				t.Errorf("stored message %+v", m)
			}
		})
	}
}

// emulatorGET reads an emulator-only endpoint over HTTPS with an iothubowner token.
func emulatorGET(t *testing.T, path string, v any) {
	t.Helper()
	sak, err := iotservice.ParseConnectionString(serviceCS)
	if err != nil {
		t.Fatal(err)
	}
	sas, err := sak.Token(sak.HostName, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, "https://"+sak.HostName+path, nil)
	req.Header.Set("Authorization", sas.String())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig()}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestQuery(t *testing.T) {
	svc := service(t)
	ctx := ctxT(t)
	tag := uniqueID("q")
	for i := 0; i < 3; i++ {
		d := createDevice(t, svc, fmt.Sprintf("%s-%d", tag, i))
		if _, err := svc.UpdateDeviceTwin(ctx, &iotservice.Twin{DeviceID: d.DeviceID, ETag: "*",
			Tags: map[string]interface{}{"suite": tag, "n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	err := svc.QueryDevices(ctx, fmt.Sprintf("SELECT * FROM devices WHERE tags.suite = '%s' AND tags.n >= 1", tag), func(v map[string]interface{}) error {
		ids = append(ids, v["deviceId"].(string))
		return nil
	})
	if err != nil || len(ids) != 2 {
		t.Fatalf("QueryDevices = %v, %v; want 2 devices", ids, err)
	}
	var counts []map[string]interface{}
	err = svc.QueryDevices(ctx, fmt.Sprintf("SELECT COUNT() AS n FROM devices WHERE tags.suite = '%s'", tag), func(v map[string]interface{}) error {
		counts = append(counts, v)
		return nil
	})
	if err != nil || len(counts) != 1 || counts[0]["n"] != float64(3) {
		t.Errorf("COUNT query = %v, %v", counts, err)
	}
}

func TestJobs(t *testing.T) {
	svc := service(t)
	ctx := ctxT(t)
	tag := uniqueID("job")
	d := createDevice(t, svc, tag)
	dev := connectDevice(t, svc, d, false)
	if err := dev.RegisterMethod(ctx, "ping", func(map[string]interface{}) (int, map[string]interface{}, error) {
		return 200, map[string]interface{}{"pong": true}, nil
	}); err != nil {
		t.Fatal(err)
	}

	twinJob := &iotservice.JobV2{JobID: tag + "-twin", Type: iotservice.JobTypeUpdateTwin,
		QueryCondition: fmt.Sprintf("deviceId = '%s'", tag),
		UpdateTwin:     map[string]interface{}{"etag": "*", "properties": map[string]interface{}{"desired": map[string]interface{}{"floor": 3}}}}
	methodJob := &iotservice.JobV2{JobID: tag + "-method", Type: iotservice.JobTypeDeviceMethod,
		QueryCondition:      fmt.Sprintf("deviceId = '%s'", tag),
		CloudToDeviceMethod: &iotservice.DeviceMethodParams{MethodName: "ping", Payload: map[string]interface{}{}, TimeoutInSeconds: 10}}
	for _, j := range []*iotservice.JobV2{twinJob, methodJob} {
		created, err := svc.CreateJobV2(ctx, j)
		if err != nil || created.JobID != j.JobID || created.Status != iotservice.JobStatusQueued {
			t.Fatalf("CreateJobV2 %s = %+v, %v", j.JobID, created, err)
		}
		var got *iotservice.JobV2
		for got == nil || got.Status != iotservice.JobStatusCompleted {
			if ctx.Err() != nil {
				t.Fatalf("job %s did not complete: %+v", j.JobID, got)
			}
			time.Sleep(200 * time.Millisecond)
			if got, err = svc.GetJobV2(ctx, j.JobID); err != nil {
				t.Fatal(err)
			}
		}
	}
	tw, err := svc.GetDeviceTwin(ctx, tag)
	if err != nil || tw.Properties.Desired["floor"] != float64(3) {
		t.Errorf("desired after the twin job: %v, %v", tw, err)
	}
	var listed []string
	if err := svc.QueryJobsV2(ctx, &iotservice.JobV2Query{Type: iotservice.JobTypeDeviceMethod, Status: iotservice.JobStatusCompleted},
		func(j *iotservice.JobV2) error {
			listed = append(listed, j.JobID)
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	if !contains(listed, methodJob.JobID) || contains(listed, twinJob.JobID) {
		t.Errorf("QueryJobsV2(method, completed) = %v", listed)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
