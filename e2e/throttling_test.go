package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Throttling per tier (--sku S1) on the fake clock: the budget refills only
// when the test moves the clock, so counts are exact.

func s1(c *hub.Config) { c.SKU, c.Units = "S1", 1 }

func TestThrottling_S1RegistryCallsGet429(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	h.CreateDevice(t, "dev1") // one of the 100 per minute
	ok := 1
	var last *hubtest.Response
	for i := 0; i < 150; i++ {
		last = h.Do(t, http.MethodGet, "/devices/dev1", nil)
		if last.StatusCode != 200 {
			break
		}
		ok++
	}
	if ok != 100 {
		t.Fatalf("%d registry operations passed, want S1's 100 per minute", ok)
	}
	checkHubError(t, last, 429, "ThrottlingException")
	// Other classes have their own budgets.
	if r := h.Do(t, http.MethodGet, "/twins/dev1", nil); r.StatusCode != 200 {
		t.Errorf("twin read under a spent registry budget: %d", r.StatusCode)
	}
	// The budget refills with the clock.
	h.Advance(t, 600*time.Millisecond) // 1.67/s: one more call
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
		t.Errorf("after 0.6 s: %d %s", r.StatusCode, r.Body)
	}
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil), 429, "ThrottlingException")
	h.Advance(t, time.Minute)
	for i := 0; i < 100; i++ {
		if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
			t.Fatalf("call %d after a minute: %d", i, r.StatusCode)
		}
	}
}

func TestThrottling_S1ShapesTheHundredAndFirstD2CInASecond(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	var toks []paho.Token
	for i := 0; i < 101; i++ {
		toks = append(toks, c.Publish("devices/dev1/messages/events/", 1, false, fmt.Sprintf("m%d", i)))
	}
	waitMessages(t, h, "deviceId=dev1", 100)
	for i, tok := range toks[:100] {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("send %d within the budget was not acknowledged while the 101st is held: %v", i, tok.Error())
		}
	}
	if toks[100].WaitTimeout(200 * time.Millisecond) {
		t.Fatal("the 101st send of the second was acknowledged at once; S1 shapes past 100/s")
	}
	if n := len(listMessages(t, h, "deviceId=dev1")); n != 100 {
		t.Fatalf("%d stored while the clock stands, want 100", n)
	}
	h.Advance(t, 10*time.Millisecond) // one more send's worth at 100/s
	if !toks[100].WaitTimeout(10*time.Second) || toks[100].Error() != nil {
		t.Fatalf("the shaped send was not acknowledged: %v", toks[100].Error())
	}
	waitMessages(t, h, "deviceId=dev1", 101)
}

func TestThrottling_OffByDefault(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	h.CreateDevice(t, "dev1")
	for i := 0; i < 150; i++ {
		if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
			t.Fatalf("call %d without --sku: %d", i, r.StatusCode)
		}
	}
}

// countUntil calls do until it answers something other than 200/204 (or
// max calls), and returns how many passed and the first refusal.
func countUntil(max int, do func(i int) *hubtest.Response) (passed int, refusal *hubtest.Response) {
	for i := 0; i < max; i++ {
		r := do(i)
		if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusNoContent {
			return passed, r
		}
		passed++
	}
	return passed, nil
}

// statusesOf makes n GET calls of path (api-version added) with the given
// Authorization from a few goroutines at once, and counts the answers by
// status: a budget cares how many calls came, not in which order.
func statusesOf(t *testing.T, h *hubtest.Hub, n int, path, auth string) map[int]int {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	var (
		mu     sync.Mutex
		counts = map[int]int{}
		failed error
		wg     sync.WaitGroup
	)
	next := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		next <- struct{}{}
	}
	close(next)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				req, _ := http.NewRequest(http.MethodGet, h.HTTPURL()+path+"?api-version=2021-04-12", nil)
				req.Header.Set("Authorization", auth)
				resp, err := client.Do(req)
				mu.Lock()
				if err != nil {
					failed = err
				} else {
					counts[resp.StatusCode]++
				}
				mu.Unlock()
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatalf("GET %s: %v", path, failed)
	}
	return counts
}

// C2D sends (here the emulator's REST stand-in for the service's AMQP
// send): 100 a minute per S1 unit, then 429001.
func TestThrottling_S1C2DSends(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	// A device queues at most 50 messages: spread the 100 over three.
	for _, id := range []string{"c0", "c1", "c2"} {
		h.CreateDevice(t, id)
	}
	send := func(i int) *hubtest.Response {
		return h.Do(t, http.MethodPost, fmt.Sprintf("/_emulator/devices/c%d/messages/devicebound", i%3), map[string]any{"body": "x"})
	}
	passed, refusal := countUntil(150, send)
	if passed != 100 || refusal == nil {
		t.Fatalf("%d C2D sends passed, want S1's 100 per minute", passed)
	}
	checkHubError(t, refusal, 429, "ThrottlingException")
	if !strings.Contains(string(refusal.Body), "cloud-to-device sends") {
		t.Errorf("the refusal does not name the quota: %s", refusal.Body)
	}
	// The queue listing is the emulator's own and never throttled.
	if r := h.Do(t, http.MethodGet, "/_emulator/devices/c0/messages/devicebound", nil); r.StatusCode != 200 {
		t.Errorf("listing a queue under a spent C2D budget: %d", r.StatusCode)
	}
	h.Advance(t, 600*time.Millisecond) // 1.67/s
	if r := send(0); r.StatusCode != 200 {
		t.Errorf("after 0.6 s: %d %s", r.StatusCode, r.Body)
	}
}

// C2D receives over HTTPS: 1,000 a minute per S1 unit; completing a
// message is not a receive.
func TestThrottling_S1C2DReceivesOverHTTPS(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "poller")
	auth := "Authorization: " + d.Token(t, h, 24*time.Hour)
	sendC2D(t, h, "poller", map[string]any{"body": "one"})
	r := h.Do(t, http.MethodGet, "/devices/poller/messages/deviceBound", nil, auth)
	if r.StatusCode != 200 {
		t.Fatalf("receive: %d %s", r.StatusCode, r.Body)
	}
	lock := strings.Trim(r.Header.Get("ETag"), `"`)
	// 1,100 more, at once: 999 pass (the queue is empty now: 204), 101 get 429.
	counts := statusesOf(t, h, 1100, "/devices/poller/messages/devicebound", d.Token(t, h, 24*time.Hour))
	if counts[http.StatusNoContent] != 999 || counts[http.StatusTooManyRequests] != 101 || len(counts) != 2 {
		t.Fatalf("receives answered %v, want 999 × 204 and 101 × 429 (S1: 1,000 per minute)", counts)
	}
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/poller/messages/devicebound", nil, auth), 429, "ThrottlingException")
	if r := h.Do(t, http.MethodDelete, "/devices/poller/messages/deviceBound/"+lock, nil, auth); r.StatusCode != http.StatusNoContent {
		t.Fatalf("complete under a spent receive budget: %d %s", r.StatusCode, r.Body)
	}
}

// File upload initiations: 100 a minute per S1 unit (the notifications
// are not counted).
func TestThrottling_S1FileUploadInitiations(t *testing.T) {
	t.Parallel()
	endpoint, _ := fakeBlobService(t)
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(func(c *hub.Config) {
		s1(c)
		c.StorageConnectionString = "AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=" + endpoint
	}))
	d := h.CreateDevice(t, "cam")
	auth := "Authorization: " + d.Token(t, h, 24*time.Hour)
	// A device has at most 10 uploads in flight: each is notified at once.
	upload := func(i int) *hubtest.Response {
		r := h.Do(t, http.MethodPost, "/devices/cam/files", map[string]string{"blobName": fmt.Sprintf("f%d", i)}, auth)
		if r.StatusCode != 200 {
			return r
		}
		var info struct{ CorrelationID string }
		r.JSON(t, &info)
		if n := h.Do(t, http.MethodPost, "/devices/cam/files/notifications",
			map[string]any{"correlationId": info.CorrelationID, "isSuccess": true, "statusCode": 200}, auth); n.StatusCode != http.StatusNoContent {
			t.Fatalf("notification %d: %d %s", i, n.StatusCode, n.Body)
		}
		return r
	}
	passed, refusal := countUntil(150, upload)
	if passed != 100 || refusal == nil {
		t.Fatalf("%d file uploads started, want S1's 100 per minute", passed)
	}
	checkHubError(t, refusal, 429, "ThrottlingException")
}

// Direct methods are throttled by payload bytes in 4 KB meters: S1 takes
// 160 KB a second, 40 calls of up to 4 KB or 20 of 4 to 8 KB. A digital
// twin command is a direct method.
func TestThrottling_S1DirectMethodsByPayloadSize(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	h.CreateDevice(t, "offline")
	invoke := func(payloadBytes int) *hubtest.Response {
		payload := `"` + strings.Repeat("a", payloadBytes-2) + `"`
		return h.Do(t, http.MethodPost, "/twins/offline/methods",
			fmt.Sprintf(`{"methodName":"m","payload":%s,"responseTimeoutInSeconds":5}`, payload))
	}
	for _, tc := range []struct{ payload, calls int }{{100, 40}, {6000, 20}} {
		// The device is offline: a call that passes the throttle gets
		// 404103 from the hub, one that does not gets 429001.
		calls := 0
		var r *hubtest.Response
		for ; calls < 100; calls++ {
			if r = invoke(tc.payload); r.StatusCode != http.StatusNotFound {
				break
			}
		}
		if calls != tc.calls {
			t.Fatalf("%d-byte payloads: %d calls reached the device, want %d", tc.payload, calls, tc.calls)
		}
		checkHubError(t, r, 429, "ThrottlingException")
		if !strings.Contains(string(r.Body), "160KB/sec") {
			t.Errorf("the refusal does not name the quota: %s", r.Body)
		}
		h.Advance(t, time.Second)
	}
	// Commands share the budget.
	for i := 0; i < 40; i++ {
		invoke(100)
	}
	r := h.Do(t, http.MethodPost, "/digitaltwins/offline/commands/reboot", `{}`)
	checkHubError(t, r, 429, "ThrottlingException")
	// Registry calls have their own budget.
	if r := h.Do(t, http.MethodGet, "/devices/offline", nil); r.StatusCode != 200 {
		t.Errorf("registry call under a spent method budget: %d", r.StatusCode)
	}
}

// A job's device operations are paced at S1's 10 a second: the job slows
// down on the hub's clock and completes, no device fails for it.
func TestThrottling_S1JobDeviceOperationsArePaced(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	for i := 0; i < 25; i++ {
		h.CreateDevice(t, fmt.Sprintf("j%02d", i))
	}
	body := `{"jobId":"paced","type":"scheduleUpdateTwin","queryCondition":"STARTSWITH(deviceId, 'j')",
		"updateTwin":{"etag":"*","properties":{"desired":{"x":1}}},"maxExecutionTimeInSeconds":600}`
	if r := h.Do(t, http.MethodPut, "/jobs/v2/paced", body); r.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", r.StatusCode, r.Body)
	}
	// 25 updates at 10 a second: 10 at once, the other 15 over 1.5 s of
	// the hub's clock, which stands still until the test moves it.
	j := waitJob(t, h, "paced", func(j jobDoc) bool { return j.Status == "running" && j.Stats.DeviceCount == 25 })
	if j.Stats.SucceededCount == 25 {
		t.Fatal("the job completed all 25 devices while the clock stood still")
	}
	// The devices hear of the patch at the tier's pace: ten at once, ten
	// more a second later.
	patched := func() int {
		var rows []struct{ N int }
		h.Do(t, http.MethodPost, "/devices/query", `{"query":"SELECT COUNT() AS n FROM devices WHERE properties.desired.x = 1"}`).JSON(t, &rows)
		if len(rows) != 1 {
			t.Fatalf("count query answered %v", rows)
		}
		return rows[0].N
	}
	checkFor(t, 20*time.Second, func() error {
		if n := patched(); n != 10 {
			return fmt.Errorf("%d twins patched, want the first 10", n)
		}
		return nil
	})
	h.Advance(t, time.Second)
	checkFor(t, 20*time.Second, func() error {
		if n := patched(); n != 20 {
			return fmt.Errorf("%d twins patched a second later, want 20", n)
		}
		return nil
	})
	advanceUntil(t, h, 100*time.Millisecond, func() error {
		if j = getJob(t, h, "paced"); j.Status != "completed" {
			return fmt.Errorf("job is %s %+v", j.Status, j.Stats)
		}
		return nil
	})
	if j.Stats.SucceededCount != 25 || j.Stats.FailedCount != 0 {
		t.Fatalf("paced job stats %+v, want 25 succeeded", j.Stats)
	}
	start, err1 := time.Parse(time.RFC3339Nano, j.StartTime)
	end, err2 := time.Parse(time.RFC3339Nano, j.EndTime)
	if err1 != nil || err2 != nil || end.Sub(start) < 1500*time.Millisecond {
		t.Fatalf("the job ran from %s to %s on the hub's clock, want at least 1.5 s", j.StartTime, j.EndTime)
	}
}

// getJob reads a job once.
func getJob(t *testing.T, h *hubtest.Hub, id string) jobDoc {
	t.Helper()
	var j jobDoc
	h.Do(t, http.MethodGet, "/jobs/v2/"+id, nil).JSON(t, &j)
	return j
}

// Every class S1 refuses at once past its budget: exactly the documented
// count passes while the clock stands, the next call gets 429001, and a
// minute later the budget is full again.
func TestThrottling_S1RefusesPastEachBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		budget int
		call   func(t *testing.T, h *hubtest.Hub) *hubtest.Response
	}{
		{"twin reads (REST)", 100, func(t *testing.T, h *hubtest.Hub) *hubtest.Response {
			return h.Do(t, http.MethodGet, "/twins/dev1", nil)
		}},
		{"twin updates (REST)", 50, func(t *testing.T, h *hubtest.Hub) *hubtest.Response {
			return h.Do(t, http.MethodPatch, "/twins/dev1", `{"tags":{"x":1}}`)
		}},
		{"queries", 20, func(t *testing.T, h *hubtest.Hub) *hubtest.Response {
			return h.Do(t, http.MethodPost, "/devices/query", `{"query":"SELECT * FROM devices"}`)
		}},
		{"jobs operations", 100, func(t *testing.T, h *hubtest.Hub) *hubtest.Response {
			return h.Do(t, http.MethodGet, "/jobs/v2/query", nil)
		}},
		{"configurations", 20, func(t *testing.T, h *hubtest.Hub) *hubtest.Response {
			return h.Do(t, http.MethodGet, "/configurations", nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
			h.CreateDevice(t, "dev1")
			passed, refusal := countUntil(tc.budget+50, func(int) *hubtest.Response { return tc.call(t, h) })
			if passed != tc.budget || refusal == nil {
				t.Fatalf("%d calls passed, want S1's %d", passed, tc.budget)
			}
			checkHubError(t, refusal, 429, "ThrottlingException")
			h.Advance(t, time.Minute)
			if passed, _ := countUntil(tc.budget, func(int) *hubtest.Response { return tc.call(t, h) }); passed != tc.budget {
				t.Fatalf("a minute later %d calls passed, want %d", passed, tc.budget)
			}
		})
	}
}

// New device connections: 100 a second on S1; the 101st CONNECT of the
// second gets CONNACK 3 (server unavailable), which the SDKs retry.
func TestThrottling_S1NewConnections(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "dev1")
	for i := 0; i < 100; i++ {
		c := mustDial(t, h, d, connOpts{}) // each replaces the one before
		c.Disconnect(0)
	}
	if _, err := dial(t, h, d, connOpts{}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
		t.Fatalf("the 101st connection of the second: %v, want CONNACK 3 server unavailable", err)
	}
	h.Advance(t, 10*time.Millisecond) // one more connection's worth at 100/s
	mustDial(t, h, d, connOpts{})
}

// Twin reads over MQTT share the REST budget; the refusal is a 429 twin
// response whose body carries 429001 and a timestamp on the hub's clock.
func TestThrottling_S1TwinReadsOverMQTT(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "dev1")
	for i := 0; i < 60; i++ { // 60 of the 100 a second over REST
		if r := h.Do(t, http.MethodGet, "/twins/dev1", nil); r.StatusCode != 200 {
			t.Fatalf("REST read %d: %d", i, r.StatusCode)
		}
	}
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/res/#")
	for i := 0; i < 41; i++ {
		c.publish(t, fmt.Sprintf("$iothub/twin/GET/?$rid=%d", i), 0, "")
	}
	var refused paho.Message
	checkFor(t, 20*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		ok := 0
		for _, m := range c.received {
			switch {
			case strings.HasPrefix(m.Topic(), "$iothub/twin/res/200/"):
				ok++
			case strings.HasPrefix(m.Topic(), "$iothub/twin/res/429/"):
				refused = m
			}
		}
		if ok != 40 || refused == nil {
			return fmt.Errorf("%d answered 200, refusal %v; want 40 and one 429", ok, refused != nil)
		}
		return nil
	})
	var body struct {
		ErrorCode    int    `json:"errorCode"`
		TimestampUTC string `json:"timestampUtc"`
	}
	if err := json.Unmarshal(refused.Payload(), &body); err != nil || body.ErrorCode != 429001 ||
		!strings.HasPrefix(body.TimestampUTC, clockStart.Format("2006-01-02T15:04:05")) {
		t.Fatalf("429 twin response %s (%v), want errorCode 429001 stamped with the hub's clock", refused.Payload(), err)
	}
}

// Calls the hub refuses for their credentials spend nothing of a budget:
// a client without a valid token cannot throttle the others (service and
// device routes alike).
func TestThrottling_UnauthenticatedCallsSpendNothing(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "dev1")
	upload := func(auth string) *hubtest.Response {
		return h.Do(t, http.MethodPost, "/devices/dev1/files", map[string]string{"blobName": "x"}, auth)
	}
	for i := 0; i < 150; i++ {
		expectError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil, "Authorization: SharedAccessSignature sr=x&sig=y&se=1&skn=iothubowner"),
			http.StatusUnauthorized, "IotHubUnauthorizedAccess")
		expectError(t, upload("Authorization: "+h.ServiceToken(t, "registryRead")), http.StatusUnauthorized, "IotHubUnauthorizedAccess")
	}
	passed, _ := countUntil(99, func(int) *hubtest.Response { return h.Do(t, http.MethodGet, "/devices/dev1", nil) })
	if passed != 99 {
		t.Fatalf("%d registry calls passed after 150 unauthenticated ones, want the 99 left of S1's 100", passed)
	}
	// File upload initiations (100 a minute) count even when the hub then
	// refuses them, here for want of storage (400).
	auth := "Authorization: " + d.Token(t, h, time.Hour)
	for i := 0; i < 100; i++ {
		expectError(t, upload(auth), http.StatusBadRequest, "BlobContainerValidationError")
	}
	checkHubError(t, upload(auth), 429, "ThrottlingException")
}
