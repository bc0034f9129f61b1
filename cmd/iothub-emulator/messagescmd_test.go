package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMessagesTail(t *testing.T) {
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	h.CreateDevice(t, "dev2")
	send := func(dev, body string, props map[string]string) {
		t.Helper()
		if err := h.Telemetry.Send(context.Background(), &messaging.Message{DeviceID: dev, MessageID: "m-" + body, Properties: props, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	send("dev1", "first", nil)
	send("dev2", "other", nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"messages", "tail", "--url", h.HTTPURL(), "--device", "dev1", "--from", "1"}, out, io.Discard)
	}()
	wait := func(s string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("output has no %q:\n%s", s, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait(`#1 dev1 "first" $.mid=m-first`)
	send("dev1", "second", map[string]string{"k": "v"})
	wait(`dev1 "second" $.mid=m-second k=v`)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("tail: %v", err)
	}
	if strings.Contains(out.String(), "other") {
		t.Errorf("another device's message was printed:\n%s", out.String())
	}
}

func TestFormatMessage(t *testing.T) {
	m := &messageView{SequenceNumber: 7, EnqueuedTimeUTC: "bad time", DeviceID: "d", ModuleID: "m", Body: "AAE=", BodyEncoding: "base64",
		Properties: map[string]string{"b": "2", "a": "1"}, SystemProperties: map[string]string{"content-type": "application/octet-stream"}}
	if got, want := formatMessage(m), `bad time #7 d/m base64:AAE= $.ct=application/octet-stream a=1 b=2`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
