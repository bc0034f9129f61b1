package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
)

// DPS benchmarks, recorded in docs/benchmarks.md ("Device Provisioning
// Service"). The database is on disk; devices speak raw MQTT over TLS as the
// SDKs do. No test asserts on timings.

// dpsDevice is one registering device: a DPS MQTT connection whose
// responses arrive on a channel.
type dpsDevice struct {
	regID string
	c     paho.Client
	res   chan paho.Message
}

func dialDPSDevice(b *testing.B, h *hubtest.Hub, regID, key string) *dpsDevice {
	d := &dpsDevice{regID: regID, res: make(chan paho.Message, 4)}
	tok, _ := signToken(dpsScope+"/registrations/"+regID, key, "registration")
	opts := paho.NewClientOptions().AddBroker("tls://" + h.MQTTSAddr()).SetTLSConfig(h.TLSConfig()).SetProtocolVersion(4).
		SetClientID(regID).SetUsername(dpsScope + "/registrations/" + regID + "/api-version=2019-03-31").SetPassword(tok).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(30 * time.Second)
	d.c = paho.NewClient(opts)
	if t := d.c.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		b.Fatalf("connect %s: %v", regID, t.Error())
	}
	if t := d.c.Subscribe("$dps/registrations/res/#", 1, func(_ paho.Client, m paho.Message) { d.res <- m }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("subscribe: %v", t.Error())
	}
	return d
}

// register runs one registration: the PUT, then the status request the SDKs
// send after retry-after (sent at once here: the benchmark measures the
// service, not the polling interval).
func (d *dpsDevice) register(rid int) error {
	d.c.Publish(fmt.Sprintf("$dps/registrations/PUT/iotdps-register/?$rid=%d", rid), 1, false, `{"registrationId":"`+d.regID+`"}`)
	m := <-d.res
	if !strings.HasPrefix(m.Topic(), "$dps/registrations/res/202/") {
		return fmt.Errorf("register: %s %s", m.Topic(), m.Payload())
	}
	var op provisioning.Operation
	if err := json.Unmarshal(m.Payload(), &op); err != nil {
		return err
	}
	d.c.Publish(fmt.Sprintf("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%d&operationId=%s", rid+1, op.OperationID), 1, false, " ")
	m = <-d.res
	if !strings.HasPrefix(m.Topic(), "$dps/registrations/res/200/") || !strings.Contains(string(m.Payload()), `"status":"assigned"`) {
		return fmt.Errorf("status: %s %s", m.Topic(), m.Payload())
	}
	return nil
}

func benchGroup(b *testing.B, h *hubtest.Hub) string {
	r := h.Do(b, http.MethodPut, "/enrollmentGroups/bench?api-version=2021-10-01", map[string]any{
		"enrollmentGroupId": "bench", "attestation": map[string]any{"type": "symmetricKey"},
		"initialTwin": map[string]any{"properties": map[string]any{"desired": map[string]any{"rate": 1}}},
	}, "Authorization: "+dpsServiceToken(b, h))
	if r.StatusCode != http.StatusOK {
		b.Fatalf("put group: %d %s", r.StatusCode, r.Body)
	}
	var g provisioning.EnrollmentGroup
	r.JSON(b, &g)
	return g.Attestation.SymmetricKey.PrimaryKey
}

// BenchmarkProvisioning_MQTT100 registers over MQTT from 100 concurrent
// devices of one symmetric-key group; each registration is a register and a
// status request, and creates (first time) or updates the device in the hub
// and writes its registration state.
func BenchmarkProvisioning_MQTT100(b *testing.B) {
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
	groupKey := benchGroup(b, h)
	const devices = 100
	devs := make([]*dpsDevice, devices)
	for i := range devs {
		regID := fmt.Sprintf("bench-%03d", i)
		key, _ := provisioning.DeriveKey(groupKey, regID)
		devs[i] = dialDPSDevice(b, h, regID, key)
	}
	defer func() {
		for _, d := range devs {
			d.c.Disconnect(0)
		}
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	b.ResetTimer()
	for _, d := range devs {
		wg.Add(1)
		go func(d *dpsDevice) {
			defer wg.Done()
			for rid := 0; next.Add(1) <= int64(b.N); rid += 2 {
				if err := d.register(rid); err != nil {
					errs <- err
					return
				}
			}
		}(d)
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}

// BenchmarkProvisioning_RegisterToTelemetry measures what a new device
// waits from its register request to its first telemetry message stored by
// the hub: DPS connect, register, status, hub connect, publish (QoS 1,
// acknowledged once stored). The SDKs' retry-after wait (1 s here, 3 s in
// the cloud) is not included. Reports the median and p99.
func BenchmarkProvisioning_RegisterToTelemetry(b *testing.B) {
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
	groupKey := benchGroup(b, h)
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		regID := fmt.Sprintf("tel-%d", i)
		key, _ := provisioning.DeriveKey(groupKey, regID)
		start := time.Now()
		d := dialDPSDevice(b, h, regID, key)
		if err := d.register(0); err != nil {
			b.Fatal(err)
		}
		d.c.Disconnect(0)
		tok, _ := signToken(h.Hostname()+"/devices/"+regID, key, "")
		opts := paho.NewClientOptions().AddBroker("tls://" + h.MQTTSAddr()).SetTLSConfig(h.TLSConfig()).SetProtocolVersion(4).
			SetClientID(regID).SetUsername(h.Hostname() + "/" + regID + "/?api-version=2021-04-12").SetPassword(tok).
			SetAutoReconnect(false).SetConnectTimeout(30 * time.Second)
		c := paho.NewClient(opts)
		if t := c.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			b.Fatalf("hub connect: %v", t.Error())
		}
		if t := c.Publish("devices/"+regID+"/messages/events/", 1, false, "hello"); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			b.Fatalf("telemetry: %v", t.Error())
		}
		lat[i] = time.Since(start)
		c.Disconnect(0)
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
