// Package sdk runs the Go SDK github.com/amenzhinsky/iothub against a
// running emulator, as e2e/sdk/run.sh starts it (IOTHUB_CONNECTION_STRING,
// IOTHUB_CA_FILE). It is a module of its own: the SDK needs go-amqp v0.18,
// and the emulator's own module uses go-amqp v1 in its tests; one module
// cannot hold both.
//
// This file covers the SDK's AMQP side: SendEvent (C2D over AMQPS 5671) and
// SubscribeFeedback. Its helpers carry a c2d prefix so the file can sit
// beside other files of the suite.
package sdk

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/amenzhinsky/iothub/common"
	"github.com/amenzhinsky/iothub/iotdevice"
	iotmqtt "github.com/amenzhinsky/iothub/iotdevice/transport/mqtt"
	"github.com/amenzhinsky/iothub/iotservice"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func c2dEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run the suite through e2e/sdk/run.sh, or export it yourself", name)
	}
	return v
}

func c2dTLS(t *testing.T) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(c2dEnv(t, "IOTHUB_CA_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in IOTHUB_CA_FILE")
	}
	return &tls.Config{RootCAs: pool}
}

// service returns a service client on the iothubowner connection string,
// trusting the emulator's CA for REST and AMQP (5671).
func c2dService(t *testing.T) *iotservice.Client {
	t.Helper()
	cfg := c2dTLS(t)
	c, err := iotservice.NewFromConnectionString(c2dEnv(t, "IOTHUB_CONNECTION_STRING"),
		iotservice.WithTLSConfig(cfg),
		iotservice.WithHTTPClient(&http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func c2dID(prefix string) string {
	return fmt.Sprintf("go-%s-%d-%d", prefix, time.Now().UnixNano()%1e9, c2dSeq.Add(1))
}

var c2dSeq atomic.Int64

// c2dDevice creates a device over REST and connects it over MQTT (8883),
// subscribed to its C2D messages; it is deleted at the end of the test.
func c2dDevice(ctx context.Context, t *testing.T, svc *iotservice.Client) (string, *iotdevice.EventSub) {
	t.Helper()
	id := c2dID("go-c2d")
	d, err := svc.CreateDevice(ctx, &iotservice.Device{DeviceID: id})
	if err != nil {
		t.Fatalf("create device: %v", err)
	}
	t.Cleanup(func() { _ = svc.DeleteDevice(context.Background(), d) })
	host := strings.Split(strings.Split(c2dEnv(t, "IOTHUB_CONNECTION_STRING"), "HostName=")[1], ";")[0]
	cfg := c2dTLS(t)
	tr := iotmqtt.New(iotmqtt.WithClientOptionsConfig(func(o *mqtt.ClientOptions) { o.SetTLSConfig(cfg) }))
	dev, err := iotdevice.NewFromConnectionString(tr, "HostName="+host+";DeviceId="+id+";SharedAccessKey="+d.Authentication.SymmetricKey.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Connect(ctx); err != nil {
		t.Fatalf("connect the device: %v", err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	sub, err := dev.SubscribeEvents(ctx)
	if err != nil {
		t.Fatalf("subscribe to C2D: %v", err)
	}
	return id, sub
}

func TestSendEventReachesAnMQTTDeviceWithFeedback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc := c2dService(t)
	id, sub := c2dDevice(ctx, t, svc)

	mid, cid := c2dID("mid"), c2dID("cid")
	if err := svc.SendEvent(ctx, id, []byte(`{"command":"open"}`),
		iotservice.WithSendMessageID(mid), iotservice.WithSendCorrelationID(cid),
		iotservice.WithSendAck(iotservice.AckFull), iotservice.WithSendProperty("level", "high")); err != nil {
		t.Fatalf("SendEvent: %v", err)
	}
	var got *common.Message
	select {
	case got = <-sub.C():
	case <-ctx.Done():
		t.Fatal("the device received nothing")
	}
	if string(got.Payload) != `{"command":"open"}` || got.MessageID != mid || got.CorrelationID != cid ||
		got.Properties["level"] != "high" || got.To != "/devices/"+id+"/messages/devicebound" {
		t.Fatalf("received %+v", got)
	}

	// The MQTT PUBACK completed it; ack=full asks for that feedback.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	found := make(chan *iotservice.Feedback, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- svc.SubscribeFeedback(fctx, func(f *iotservice.Feedback) error {
			if f.OriginalMessageID == mid {
				select {
				case found <- f:
				default:
				}
			}
			return nil
		})
	}()
	select {
	case f := <-found:
		if f.StatusCode != "Success" || f.DeviceID != id || f.EnqueuedTimeUTC.IsZero() {
			t.Fatalf("feedback %+v", f)
		}
	case err := <-errc:
		t.Fatalf("SubscribeFeedback: %v", err)
	case <-ctx.Done():
		t.Fatal("no feedback for the completed message")
	}
}

func TestSendEventToAnUnknownDeviceIsRejectedNotFound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c2dService(t).SendEvent(ctx, c2dID("nobody"), []byte("lost"))
	// go-amqp v0.18 reports a rejection as *amqp.Error, or as *amqp.DetachError
	// carrying it when the link settles first.
	var amqpErr *amqp.Error
	var detachErr *amqp.DetachError
	if errors.As(err, &detachErr) && detachErr.RemoteErr != nil {
		amqpErr = detachErr.RemoteErr
	} else if !errors.As(err, &amqpErr) {
		amqpErr = nil
	}
	if amqpErr == nil || amqpErr.Condition != "amqp:not-found" {
		t.Fatalf("SendEvent to an unknown device: %v (%T), want an amqp:not-found rejection", err, err)
	}
}
