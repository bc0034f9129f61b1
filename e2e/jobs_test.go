package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

type jobDoc struct {
	JobID          string `json:"jobId"`
	Type           string `json:"type"`
	Status         string `json:"status"`
	QueryCondition string `json:"queryCondition"`
	StartTime      string `json:"startTime"`
	EndTime        string `json:"endTime"`
	FailureReason  string `json:"failureReason"`
	Stats          struct {
		DeviceCount, FailedCount, SucceededCount, RunningCount, PendingCount int
	} `json:"deviceJobStatistics"`
}

func waitJob(t *testing.T, h *hubtest.Hub, id string, done func(jobDoc) bool) jobDoc {
	t.Helper()
	var j jobDoc
	checkFor(t, 30*time.Second, func() error {
		r := h.Do(t, http.MethodGet, "/jobs/v2/"+id, nil)
		if r.StatusCode != 200 {
			return fmt.Errorf("GET job: %d %s", r.StatusCode, r.Body)
		}
		r.JSON(t, &j)
		if !done(j) {
			return fmt.Errorf("job %s is %s %+v", id, j.Status, j.Stats)
		}
		return nil
	})
	return j
}

func TestJobs_TwinUpdateJob(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	fleetForQueries(t, h) // q00..q06; even ones in building 43
	d := &hubtest.Device{ID: "q02"}
	r := h.Do(t, http.MethodGet, "/devices/q02", nil)
	var dev struct {
		Authentication struct{ SymmetricKey struct{ PrimaryKey string } }
	}
	r.JSON(t, &dev)
	d.PrimaryKey = dev.Authentication.SymmetricKey.PrimaryKey
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")

	body := `{"jobId":"twinjob1","type":"scheduleUpdateTwin","queryCondition":"tags.building = 43",
		"updateTwin":{"etag":"*","properties":{"desired":{"building":43,"floor":3}}},"startTime":null}`
	r = h.Do(t, http.MethodPut, "/jobs/v2/twinjob1", body)
	if r.StatusCode != 200 {
		t.Fatalf("PUT job: %d %s", r.StatusCode, r.Body)
	}
	if string(r.Body) != `{"jobId":"twinjob1","type":"scheduleUpdateTwin","status":"queued"}` {
		t.Errorf("PUT answered %s, want the hub's short form", r.Body)
	}
	j := waitJob(t, h, "twinjob1", func(j jobDoc) bool { return j.Status == "completed" })
	if j.Stats.DeviceCount != 4 || j.Stats.SucceededCount != 4 || j.Stats.FailedCount != 0 || j.EndTime == "" {
		t.Errorf("job = %+v", j)
	}
	m := c.waitFor(t, "$iothub/twin/PATCH/properties/desired/")
	var patch map[string]any
	json.Unmarshal(m.Payload(), &patch)
	if patch["floor"] != float64(3) {
		t.Errorf("device got %s", m.Payload())
	}
	if tw := getTwin(t, h, "/twins/q04"); tw.Properties.Desired["floor"] != float64(3) {
		t.Errorf("q04 desired = %v", tw.Properties.Desired)
	}
	if tw := getTwin(t, h, "/twins/q01"); tw.Properties.Desired["floor"] != nil {
		t.Errorf("q01 is not in building 43 but got %v", tw.Properties.Desired)
	}

	rq, items := runQuery(t, h, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'twinjob1'")
	if rq.Header.Get("x-ms-item-type") != "DeviceJob" || len(items) != 4 {
		t.Fatalf("devices.jobs: type %q, %d items", rq.Header.Get("x-ms-item-type"), len(items))
	}
	for _, it := range items {
		if it["status"] != "completed" || it["jobType"] != "scheduleUpdateTwin" || it["jobId"] != "twinjob1" {
			t.Errorf("device job record %v", it)
		}
		for _, f := range []string{"startTimeUtc", "endTimeUtc", "createdDateTimeUtc", "lastUpdatedDateTimeUtc"} {
			if _, ok := it[f]; !ok {
				t.Errorf("device job record lacks %s: %v", f, it)
			}
		}
	}

	rl := h.Do(t, http.MethodGet, "/jobs/v2/query?jobType=scheduleUpdateTwin&jobStatus=completed", nil)
	var list []jobDoc
	rl.JSON(t, &list)
	if rl.Header.Get("x-ms-item-type") != "JobResponse" || len(list) != 1 || list[0].JobID != "twinjob1" {
		t.Errorf("jobs query: %s %s", rl.Header.Get("x-ms-item-type"), rl.Body)
	}
}

func TestJobs_ScheduledCancelAndErrors(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	fleetForQueries(t, h)
	start := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	body := fmt.Sprintf(`{"jobId":"later","type":"scheduleUpdateTwin","queryCondition":"*","startTime":"%s",
		"updateTwin":{"etag":"*","properties":{"desired":{"x":1}}},"maxExecutionTimeInSeconds":60}`, start)
	if r := h.Do(t, http.MethodPut, "/jobs/v2/later", body); r.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", r.StatusCode, r.Body)
	}
	var j jobDoc
	h.Do(t, http.MethodGet, "/jobs/v2/later", nil).JSON(t, &j)
	if j.Status != "scheduled" || j.Stats.DeviceCount != 0 {
		t.Errorf("future job %+v", j)
	}
	r := h.Do(t, http.MethodPost, "/jobs/v2/later/cancel", nil)
	r.JSON(t, &j)
	if r.StatusCode != 200 || j.Status != "cancelled" {
		t.Errorf("cancel: %d %s", r.StatusCode, r.Body)
	}
	checkHubError(t, h.Do(t, http.MethodPut, "/jobs/v2/later", body), 409, "JobAlreadyExists")
	checkHubError(t, h.Do(t, http.MethodGet, "/jobs/v2/nope", nil), 404, "JobNotFound")
	checkHubError(t, h.Do(t, http.MethodPut, "/jobs/v2/bad1", `{"jobId":"bad1","type":"scheduleTwinUpdate","queryCondition":"*"}`), 400, "GenericBadRequest")
	checkHubError(t, h.Do(t, http.MethodPut, "/jobs/v2/bad2", `{"jobId":"bad2","type":"scheduleUpdateTwin","queryCondition":"tags.x = ","updateTwin":{"etag":"*","properties":{"desired":{"x":1}}}}`), 400, "ArgumentInvalid")
	if tw := getTwin(t, h, "/twins/q00"); tw.Properties.Desired["x"] != nil {
		t.Errorf("a cancelled scheduled job ran: %v", tw.Properties.Desired)
	}
}
