package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// jobRequest is the body of PUT /jobs/v2/{id} (digest §3.7).
type jobRequest struct {
	JobID               string          `json:"jobId"`
	Type                string          `json:"type"`
	QueryCondition      string          `json:"queryCondition"`
	StartTime           *string         `json:"startTime"`
	MaxExecutionSeconds *int64          `json:"maxExecutionTimeInSeconds"`
	CloudToDeviceMethod *methodRequest  `json:"cloudToDeviceMethod"`
	UpdateTwin          json.RawMessage `json:"updateTwin"`
}

type methodRequest struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload"`
	ResponseTimeoutInSeconds *int64          `json:"responseTimeoutInSeconds"`
	// The Go SDK sends timeoutInSeconds (sdk-behavior.md §4.2).
	TimeoutInSeconds        *int64 `json:"timeoutInSeconds"`
	ConnectTimeoutInSeconds *int64 `json:"connectTimeoutInSeconds"`
}

func parseJobTime(s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		// .NET writes times without a zone; they are UTC.
		if t2, err2 := time.Parse("2006-01-02T15:04:05.9999999", *s); err2 == nil {
			return t2, nil
		}
		return time.Time{}, iothub.Errorf(iothub.ArgumentInvalid, "startTime '%s' is not an ISO 8601 time.", *s)
	}
	return t.UTC(), nil
}

func (req *jobRequest) toJob() (*jobs.Job, error) {
	j := &jobs.Job{ID: req.JobID, Type: req.Type, QueryCondition: req.QueryCondition}
	var err error
	if j.StartTime, err = parseJobTime(req.StartTime); err != nil {
		return nil, err
	}
	if req.MaxExecutionSeconds != nil {
		if *req.MaxExecutionSeconds < 0 {
			return nil, iothub.Errorf(iothub.ArgumentInvalid, "maxExecutionTimeInSeconds cannot be negative.")
		}
		j.MaxExecutionTime = time.Duration(*req.MaxExecutionSeconds) * time.Second
	}
	if m := req.CloudToDeviceMethod; m != nil {
		jm := &jobs.Method{MethodName: m.MethodName, Payload: m.Payload}
		rt := m.ResponseTimeoutInSeconds
		if rt == nil {
			rt = m.TimeoutInSeconds
		}
		if rt != nil {
			jm.ResponseTimeout = time.Duration(*rt) * time.Second
		}
		if m.ConnectTimeoutInSeconds != nil {
			jm.ConnectTimeout = time.Duration(*m.ConnectTimeoutInSeconds) * time.Second
		}
		j.Method = jm
	}
	if len(req.UpdateTwin) > 0 && !bytes.Equal(bytes.TrimSpace(req.UpdateTwin), []byte("null")) {
		p, err := wire.DecodeTwinPatch(req.UpdateTwin)
		if err != nil {
			return nil, err
		}
		var ids struct {
			DeviceID string `json:"deviceId"`
			ETag     string `json:"etag"`
		}
		_ = json.Unmarshal(req.UpdateTwin, &ids)
		j.UpdateTwin = &jobs.TwinPatch{DeviceID: ids.DeviceID, ETag: ids.ETag, Tags: p.Tags, Desired: p.Desired}
	}
	return j, nil
}

// jobResponse renders a job as the hub's JobResponse, members in the order
// of the hub's own responses.
func jobResponse(j *jobs.Job) wire.Object {
	o := wire.Object{
		{Key: "jobId", Value: j.ID},
		{Key: "queryCondition", Value: j.QueryCondition},
		{Key: "createdTime", Value: twins.FormatTime(j.CreatedTime)},
		{Key: "startTime", Value: twins.FormatTime(j.StartTime)},
	}
	if !j.EndTime.IsZero() {
		o = append(o, wire.Member{Key: "endTime", Value: twins.FormatTime(j.EndTime)})
	}
	o = append(o, wire.Member{Key: "maxExecutionTimeInSeconds", Value: int64(j.MaxExecutionTime / time.Second)},
		wire.Member{Key: "type", Value: j.Type})
	if m := j.Method; m != nil {
		o = append(o, wire.Member{Key: "cloudToDeviceMethod", Value: wire.Object{
			{Key: "methodName", Value: m.MethodName},
			{Key: "payload", Value: m.Payload},
			{Key: "responseTimeoutInSeconds", Value: int64(m.ResponseTimeout / time.Second)},
			{Key: "connectTimeoutInSeconds", Value: int64(m.ConnectTimeout / time.Second)},
		}})
	}
	if t := j.UpdateTwin; t != nil {
		var deviceID any // null when the request named none, as the hub shows it
		if t.DeviceID != "" {
			deviceID = t.DeviceID
		}
		ut := wire.Object{{Key: "deviceId", Value: deviceID}, {Key: "etag", Value: t.ETag}}
		if t.Tags != nil {
			ut = append(ut, wire.Member{Key: "tags", Value: t.Tags})
		}
		if t.Desired != nil {
			ut = append(ut, wire.Member{Key: "properties", Value: map[string]any{"desired": t.Desired}})
		}
		o = append(o, wire.Member{Key: "updateTwin", Value: ut})
	}
	o = append(o, wire.Member{Key: "status", Value: j.Status})
	if j.FailureReason != "" {
		o = append(o, wire.Member{Key: "failureReason", Value: j.FailureReason})
	}
	if j.StatusMessage != "" {
		o = append(o, wire.Member{Key: "statusMessage", Value: j.StatusMessage})
	}
	s := j.Stats
	o = append(o, wire.Member{Key: "deviceJobStatistics", Value: wire.Object{
		{Key: "deviceCount", Value: s.DeviceCount}, {Key: "failedCount", Value: s.FailedCount},
		{Key: "succeededCount", Value: s.SucceededCount}, {Key: "runningCount", Value: s.RunningCount},
		{Key: "pendingCount", Value: s.PendingCount},
	}})
	return o
}

func (s *Server) putJob(w http.ResponseWriter, r *http.Request) error {
	var req jobRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	id := pathVar(r, "id")
	if req.JobID != "" && req.JobID != id {
		return iothub.Errorf(iothub.ArgumentInvalid, "The jobId in the body (%s) does not match the one in the path (%s).", req.JobID, id)
	}
	req.JobID = id
	j, err := req.toJob()
	if err != nil {
		return err
	}
	if j, err = s.Jobs.Create(ctx(r), j); err != nil {
		return err
	}
	// The hub answers a create with this short form (digest §3.7).
	return writeJSON(w, http.StatusOK, wire.Object{{Key: "jobId", Value: j.ID}, {Key: "type", Value: j.Type}, {Key: "status", Value: jobs.StatusQueued}})
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	j, err := s.Jobs.Get(ctx(r), pathVar(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobResponse(j))
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	j, err := s.Jobs.Cancel(ctx(r), pathVar(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobResponse(j))
}

// queryJobs is GET /jobs/v2/query: a JSON array, paged like device queries.
func (s *Server) queryJobs(w http.ResponseWriter, r *http.Request) error {
	size, err := pageSize(r)
	if err != nil {
		return err
	}
	after, err := continuation(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := jobs.Filter{Type: strings.TrimSpace(q.Get("jobType")), Status: strings.TrimSpace(q.Get("jobStatus"))}
	list, err := s.Jobs.List(ctx(r), f, after, size+1)
	if err != nil {
		return err
	}
	next := ""
	if len(list) > size {
		list = list[:size]
		next = list[size-1].ID
	}
	items := make([]wire.Object, len(list))
	for i, j := range list {
		items[i] = jobResponse(j)
	}
	return writePage(w, "JobResponse", items, next)
}
