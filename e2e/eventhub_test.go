package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// The Event Hub-compatible endpoint read by the official Go Event Hubs SDK
// (azeventhubs v2), over TLS and over the development listener, with
// telemetry sent by MQTT devices.

// eventHubConsumer opens a consumer client with the hub's TLS or development
// connection string.
func eventHubConsumer(t *testing.T, h *hubtest.Hub, dev bool, group string) *azeventhubs.ConsumerClient {
	t.Helper()
	cs, opts := h.EventHubConnectionString(), &azeventhubs.ConsumerClientOptions{TLSConfig: h.TLSConfig()}
	if dev {
		cs, opts = h.EventHubDevelopmentConnectionString(), nil
	}
	if group == "" {
		group = azeventhubs.DefaultConsumerGroup
	}
	c, err := azeventhubs.NewConsumerClientFromConnectionString(cs, "", group, opts)
	if err != nil {
		t.Fatalf("consumer client from %q: %v", cs, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// sendTelemetry publishes n QoS 1 messages from device d (payload "<d>-<i>",
// message id "<d>-<i>", property seq=i) and returns once all are PUBACKed.
func sendTelemetry(t *testing.T, h *hubtest.Hub, d *hubtest.Device, from, n int) {
	t.Helper()
	c := mustDial(t, h, d, connOpts{tls: true})
	defer c.Disconnect(100)
	for i := from; i < from+n; i++ {
		c.publish(t, fmt.Sprintf("devices/%s/messages/events/%%24.mid=%s-%d&%%24.ct=application%%2Fjson&seq=%d", d.ID, d.ID, i, i), 1, fmt.Sprintf(`{"d":"%s","i":%d}`, d.ID, i))
	}
}

func receive(t *testing.T, pc *azeventhubs.PartitionClient, n int) []*azeventhubs.ReceivedEventData {
	t.Helper()
	var out []*azeventhubs.ReceivedEventData
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < n {
		evs, err := pc.ReceiveEvents(ctx, n-len(out), nil)
		out = append(out, evs...)
		if err != nil && len(out) < n {
			t.Fatalf("received %d of %d events: %v", len(out), n, err)
		}
	}
	return out
}

func TestEventHubConsumer(t *testing.T) {
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "eh-dev1")
	part := strconv.Itoa(h.EventHub.Partition(d.ID))
	sendTelemetry(t, h, d, 0, 3)

	for _, dev := range []bool{false, true} {
		t.Run(map[bool]string{false: "tls", true: "development"}[dev], func(t *testing.T) {
			ctx := context.Background()
			c := eventHubConsumer(t, h, dev, "")
			props, err := c.GetEventHubProperties(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if props.Name != "localhost" || len(props.PartitionIDs) != 4 || props.PartitionIDs[3] != "3" || props.CreatedOn.IsZero() {
				t.Fatalf("event hub properties %+v", props)
			}
			pp, err := c.GetPartitionProperties(ctx, part, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pp.IsEmpty || pp.LastEnqueuedSequenceNumber < pp.BeginningSequenceNumber || pp.LastEnqueuedOffset != strconv.FormatInt(pp.LastEnqueuedSequenceNumber, 10) {
				t.Fatalf("partition properties %+v", pp)
			}
			pc, err := c.NewPartitionClient(part, &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Earliest: ptr(true)}})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close(ctx)
			evs := receive(t, pc, 3)
			for i, e := range evs {
				if string(e.Body) != fmt.Sprintf(`{"d":"eh-dev1","i":%d}`, i) || e.Properties["seq"] != strconv.Itoa(i) ||
					e.SystemProperties["iothub-connection-device-id"] != "eh-dev1" || e.SystemProperties["iothub-message-source"] != "Telemetry" ||
					*e.MessageID != fmt.Sprintf("eh-dev1-%d", i) || *e.ContentType != "application/json" || e.EnqueuedTime == nil {
					t.Fatalf("event %d: body %s props %v system %v message id %v", i, e.Body, e.Properties, e.SystemProperties, e.MessageID)
				}
				if i > 0 && e.SequenceNumber <= evs[i-1].SequenceNumber {
					t.Fatalf("sequence numbers %d then %d", evs[i-1].SequenceNumber, e.SequenceNumber)
				}
				if e.Offset != strconv.FormatInt(e.SequenceNumber, 10) {
					t.Fatalf("offset %q for sequence number %d", e.Offset, e.SequenceNumber)
				}
			}
			if evs[2].SequenceNumber != pp.LastEnqueuedSequenceNumber {
				t.Fatalf("last event %d, partition says %d", evs[2].SequenceNumber, pp.LastEnqueuedSequenceNumber)
			}
			// From a sequence number, exclusive and inclusive.
			for _, inclusive := range []bool{false, true} {
				pc2, err := c.NewPartitionClient(part, &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{SequenceNumber: &evs[0].SequenceNumber, Inclusive: inclusive}})
				if err != nil {
					t.Fatal(err)
				}
				got := receive(t, pc2, 1)[0]
				want := evs[1].SequenceNumber
				if inclusive {
					want = evs[0].SequenceNumber
				}
				if got.SequenceNumber != want {
					t.Fatalf("inclusive=%v: first event %d, want %d", inclusive, got.SequenceNumber, want)
				}
				pc2.Close(ctx)
			}
		})
	}
}

// TestEventHubNoSystemPropertiesNoSection: telemetry sent without system
// properties reaches the consumer without an AMQP properties section (not
// one with every field null), and one sent with them carries them.
func TestEventHubNoSystemPropertiesNoSection(t *testing.T) {
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "eh-bare")
	c := mustDial(t, h, d, connOpts{tls: true})
	c.publish(t, "devices/eh-bare/messages/events/", 1, "plain")
	c.publish(t, "devices/eh-bare/messages/events/%24.mid=m1", 1, "with id")
	c.Disconnect(100)
	pc := mustPartitionClient(t, eventHubConsumer(t, h, false, ""), strconv.Itoa(h.EventHub.Partition(d.ID)), azeventhubs.StartPosition{Earliest: ptr(true)})
	evs := receive(t, pc, 2)
	if p := evs[0].RawAMQPMessage.Properties; p != nil {
		t.Fatalf("a message without system properties has a properties section: %+v", p)
	}
	if p := evs[1].RawAMQPMessage.Properties; p == nil || p.MessageID != "m1" {
		t.Fatalf("properties of a message with $.mid: %+v", p)
	}
}

func TestEventHubLatestAndEnqueuedTime(t *testing.T) {
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "eh-latest")
	part := strconv.Itoa(h.EventHub.Partition(d.ID))
	sendTelemetry(t, h, d, 0, 2)
	ctx := context.Background()
	c := eventHubConsumer(t, h, false, "")
	pc, err := c.NewPartitionClient(part, &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Latest: ptr(true)}})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	// The link is attached lazily by the first receive: start it before the
	// device publishes again.
	got := make(chan []*azeventhubs.ReceivedEventData, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var out []*azeventhubs.ReceivedEventData
		for len(out) < 1 && rctx.Err() == nil {
			evs, _ := pc.ReceiveEvents(rctx, 1, nil)
			out = append(out, evs...)
		}
		got <- out
	}()
	checkFor(t, 10*time.Second, func() error {
		if n := h.EventHub.Readers(); n == 0 {
			return errors.New("no reader attached yet")
		}
		return nil
	})
	sendTelemetry(t, h, d, 2, 1)
	evs := <-got
	if len(evs) != 1 || evs[0].Properties["seq"] != "2" {
		t.Fatalf("latest: got %d events, first %+v", len(evs), evs)
	}

	// From an enqueued time: the events after the first one's.
	first := receive(t, mustPartitionClient(t, c, part, azeventhubs.StartPosition{Earliest: ptr(true)}), 1)[0]
	after := receive(t, mustPartitionClient(t, c, part, azeventhubs.StartPosition{EnqueuedTime: first.EnqueuedTime, Inclusive: true}), 1)[0]
	if after.SequenceNumber != first.SequenceNumber {
		t.Fatalf("inclusive enqueued time: %d, want %d", after.SequenceNumber, first.SequenceNumber)
	}
}

func mustPartitionClient(t *testing.T, c *azeventhubs.ConsumerClient, part string, pos azeventhubs.StartPosition) *azeventhubs.PartitionClient {
	t.Helper()
	pc, err := c.NewPartitionClient(part, &azeventhubs.PartitionClientOptions{StartPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	return pc
}

func TestEventHubEpochSteal(t *testing.T) {
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "eh-epoch")
	part := strconv.Itoa(h.EventHub.Partition(d.ID))
	sendTelemetry(t, h, d, 0, 1)
	c := eventHubConsumer(t, h, false, "")
	low, err := c.NewPartitionClient(part, &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Earliest: ptr(true)}, OwnerLevel: ptr[int64](1)})
	if err != nil {
		t.Fatal(err)
	}
	receive(t, low, 1)
	high, err := c.NewPartitionClient(part, &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Earliest: ptr(true)}, OwnerLevel: ptr[int64](2)})
	if err != nil {
		t.Fatal(err)
	}
	receive(t, high, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = low.ReceiveEvents(ctx, 1, nil)
	var ehErr *azeventhubs.Error
	if !errors.As(err, &ehErr) || ehErr.Code != azeventhubs.ErrorCodeOwnershipLost {
		t.Fatalf("the lower epoch's receive: %v, want ownership lost", err)
	}
	// An unknown consumer group is refused.
	other := eventHubConsumer(t, h, false, "nosuchgroup")
	pc := mustPartitionClient(t, other, part, azeventhubs.StartPosition{Earliest: ptr(true)})
	if _, err := pc.ReceiveEvents(ctx, 1, nil); err == nil {
		t.Fatal("a reader of an unknown consumer group got events")
	}
}

// memCheckpoints is an in-memory azeventhubs.CheckpointStore.
type memCheckpoints struct {
	mu          sync.Mutex
	checkpoints map[string]azeventhubs.Checkpoint
	owners      map[string]azeventhubs.Ownership
	etag        int
}

func newMemCheckpoints() *memCheckpoints {
	return &memCheckpoints{checkpoints: map[string]azeventhubs.Checkpoint{}, owners: map[string]azeventhubs.Ownership{}}
}

func (m *memCheckpoints) ClaimOwnership(_ context.Context, claims []azeventhubs.Ownership, _ *azeventhubs.ClaimOwnershipOptions) ([]azeventhubs.Ownership, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []azeventhubs.Ownership
	for _, o := range claims {
		cur, ok := m.owners[o.PartitionID]
		if ok && (o.ETag == nil || cur.ETag == nil || *o.ETag != *cur.ETag) {
			continue
		}
		m.etag++
		o.ETag = ptr(azcore.ETag(strconv.Itoa(m.etag)))
		o.LastModifiedTime = time.Now()
		m.owners[o.PartitionID] = o
		out = append(out, o)
	}
	return out, nil
}

func (m *memCheckpoints) ListCheckpoints(context.Context, string, string, string, *azeventhubs.ListCheckpointsOptions) ([]azeventhubs.Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []azeventhubs.Checkpoint
	for _, c := range m.checkpoints {
		out = append(out, c)
	}
	return out, nil
}

func (m *memCheckpoints) ListOwnership(context.Context, string, string, string, *azeventhubs.ListOwnershipOptions) ([]azeventhubs.Ownership, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []azeventhubs.Ownership
	for _, o := range m.owners {
		out = append(out, o)
	}
	return out, nil
}

func (m *memCheckpoints) SetCheckpoint(_ context.Context, c azeventhubs.Checkpoint, _ *azeventhubs.SetCheckpointOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkpoints[c.PartitionID] = c
	return nil
}

// TestEventHubProcessorResumesAfterRestart runs an EventProcessor with an
// in-memory checkpoint store over events of devices on every partition,
// restarts the hub, and checks that a new processor resumes from the
// checkpoints: every event exactly once.
func TestEventHubProcessorResumesAfterRestart(t *testing.T) {
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()))
	var devs []*hubtest.Device
	parts := map[int]bool{}
	for i := 0; len(parts) < 4; i++ {
		d := h.CreateDevice(t, fmt.Sprintf("eh-proc-%d", i))
		parts[h.EventHub.Partition(d.ID)] = true
		devs = append(devs, d)
	}
	for _, d := range devs {
		sendTelemetry(t, h, d, 0, 2)
	}
	store := newMemCheckpoints()
	seen := map[string]int{}
	runProcessor(t, h, store, seen, 2*len(devs))

	h.Restart(t)
	for _, d := range devs {
		sendTelemetry(t, h, d, 2, 1)
	}
	runProcessor(t, h, store, seen, 3*len(devs))
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s seen %d times", id, n)
		}
	}
}

// runProcessor processes events until seen holds want of them, checkpointing
// after each batch.
func runProcessor(t *testing.T, h *hubtest.Hub, store azeventhubs.CheckpointStore, seen map[string]int, want int) {
	t.Helper()
	c := eventHubConsumer(t, h, false, "")
	p, err := azeventhubs.NewProcessor(c, store, &azeventhubs.ProcessorOptions{
		LoadBalancingStrategy: azeventhubs.ProcessorStrategyGreedy, UpdateInterval: time.Second,
		StartPositions: azeventhubs.StartPositions{Default: azeventhubs.StartPosition{Earliest: ptr(true)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range seen {
			n += c
		}
		return n
	}
	go func() {
		for {
			pc := p.NextPartitionClient(ctx)
			if pc == nil {
				return
			}
			go func() {
				defer pc.Close(context.Background())
				for ctx.Err() == nil {
					rctx, rcancel := context.WithTimeout(ctx, time.Second)
					evs, err := pc.ReceiveEvents(rctx, 100, nil)
					rcancel()
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						return
					}
					for _, e := range evs {
						mu.Lock()
						seen[*e.MessageID]++
						mu.Unlock()
					}
					if len(evs) > 0 {
						if err := pc.UpdateCheckpoint(ctx, evs[len(evs)-1], nil); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	checkFor(t, 50*time.Second, func() error {
		if n := total(); n < want {
			return fmt.Errorf("%d of %d events processed", n, want)
		}
		return nil
	})
	// A little longer, so that a repeat would show.
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-done
	if n := total(); n != want {
		t.Fatalf("%d events processed, want %d", n, want)
	}
}

// TestEventHubRedirect follows the redirect of messages/events the way the
// Event Hubs samples that take an IoT Hub connection string do: SASL PLAIN
// with "<policy>@sas.root.<hub>" and a SAS token, a receiver on
// messages/events, then the Event Hubs SDK on the address it is sent to.
func TestEventHubRedirect(t *testing.T) {
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "eh-redirect")
	sendTelemetry(t, h, d, 0, 1)
	owner := policy(t, h, "iothubowner")
	token, err := sasauth.Sign(h.Hostname()+"/messages/events", owner.PrimaryKey, owner.Name, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := goamqp.Dial(ctx, "amqps://"+h.AMQPSAddr(), &goamqp.ConnOptions{TLSConfig: h.TLSConfig(),
		SASLType: goamqp.SASLTypePlain(owner.Name+"@sas.root."+h.HubName(), token), HostName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sess.NewReceiver(ctx, "amqps://"+h.Hostname()+"/messages/events/$management", nil)
	var re *goamqp.Error
	if !errors.As(err, &re) || re.Condition != goamqp.ErrCondLinkRedirect {
		t.Fatalf("attach to messages/events: %v, want amqp:link:redirect", err)
	}
	info := re.Info
	host, _ := info["hostname"].(string)
	port, _ := info["port"].(int32)
	addr, _ := info["address"].(string)
	// The Node sample's parsing of the address.
	m := regexp.MustCompile(`:\d+/(.*)/\$management`).FindStringSubmatch(addr)
	if m == nil || host != "localhost" || strconv.Itoa(int(port)) != portOf(t, h.AMQPSAddr()) {
		t.Fatalf("redirect info %v", info)
	}
	cs := fmt.Sprintf("Endpoint=sb://%s:%d/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s", host, port, owner.Name, owner.PrimaryKey, m[1])
	c, err := azeventhubs.NewConsumerClientFromConnectionString(cs, "", azeventhubs.DefaultConsumerGroup, &azeventhubs.ConsumerClientOptions{TLSConfig: h.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	pc := mustPartitionClient(t, c, strconv.Itoa(h.EventHub.Partition(d.ID)), azeventhubs.StartPosition{Earliest: ptr(true)})
	if e := receive(t, pc, 1)[0]; e.SystemProperties["iothub-connection-device-id"] != d.ID {
		t.Fatalf("event after the redirect: %v", e.SystemProperties)
	}
	// A device's credentials get no redirect.
	devTok := d.Token(t, h, time.Hour)
	if _, err := goamqp.Dial(ctx, "amqps://"+h.AMQPSAddr(), &goamqp.ConnOptions{TLSConfig: h.TLSConfig(),
		SASLType: goamqp.SASLTypePlain(d.ID+"@sas.root."+h.HubName(), devTok), HostName: "localhost"}); err == nil {
		t.Fatal("a device token opened a service connection")
	}
}

func portOf(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func policy(t *testing.T, h *hubtest.Hub, name string) sasauth.Policy {
	for _, p := range h.Policies() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no policy %s", name)
	return sasauth.Policy{}
}

// TestEventHubEmulatorEndpoint checks GET /_emulator/eventhub, consumer
// groups made through the emulator-only endpoint and the seed file, and the
// --partitions setting.
func TestEventHubEmulatorEndpoint(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(seed, []byte(`{"devices": [], "consumerGroups": ["fromseed"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()), hubtest.WithConfig(func(c *hub.Config) { c.Partitions = 2; c.SeedFile = seed }))
	var info struct {
		ConnectionString, DevelopmentConnectionString, Name string
		PartitionCount                                      int
	}
	r := h.Do(t, http.MethodGet, "/_emulator/eventhub", nil)
	r.JSON(t, &info)
	owner := policy(t, h, "iothubowner")
	wantCS := "Endpoint=sb://localhost:" + portOf(t, h.AMQPSAddr()) + "/;SharedAccessKeyName=iothubowner;SharedAccessKey=" + owner.PrimaryKey + ";EntityPath=localhost"
	wantDev := "Endpoint=sb://localhost:" + portOf(t, h.AMQPAddr()) + "/;SharedAccessKeyName=iothubowner;SharedAccessKey=" + owner.PrimaryKey + ";EntityPath=localhost;UseDevelopmentEmulator=true"
	if r.StatusCode != 200 || info.Name != "localhost" || info.PartitionCount != 2 || info.ConnectionString != wantCS || info.DevelopmentConnectionString != wantDev {
		t.Fatalf("GET /_emulator/eventhub: %d %s", r.StatusCode, r.Body)
	}
	for _, c := range []struct {
		name   string
		status int
	}{{"mygroup", 201}, {"MyGroup", 200}, {"fromseed", 200}, {"$Default", 200}, {"-bad", 400}} {
		if r := h.Do(t, http.MethodPut, "/_emulator/eventhub/consumergroups/"+url.PathEscape(c.name), nil); r.StatusCode != c.status {
			t.Fatalf("PUT consumer group %s: %d %s, want %d", c.name, r.StatusCode, r.Body, c.status)
		}
	}
	var groups []struct{ Name string }
	h.Do(t, http.MethodGet, "/_emulator/eventhub/consumergroups", nil).JSON(t, &groups)
	if len(groups) != 3 {
		t.Fatalf("consumer groups %v", groups)
	}
	// Created groups are stored.
	h.Restart(t)
	h.Do(t, http.MethodGet, "/_emulator/eventhub/consumergroups", nil).JSON(t, &groups)
	if len(groups) != 3 || groups[1].Name != "fromseed" || groups[2].Name != "mygroup" {
		t.Fatalf("consumer groups after a restart %v", groups)
	}
	d := h.CreateDevice(t, "eh-groups")
	sendTelemetry(t, h, d, 0, 1)
	for _, g := range []string{"mygroup", "fromseed"} {
		c := eventHubConsumer(t, h, true, g)
		props, err := c.GetEventHubProperties(context.Background(), nil)
		if err != nil || len(props.PartitionIDs) != 2 {
			t.Fatalf("properties %+v, %v", props, err)
		}
		pc := mustPartitionClient(t, c, strconv.Itoa(h.EventHub.Partition(d.ID)), azeventhubs.StartPosition{Earliest: ptr(true)})
		if e := receive(t, pc, 1)[0]; string(e.Body) != `{"d":"eh-groups","i":0}` {
			t.Fatalf("group %s: %s", g, e.Body)
		}
	}
}
