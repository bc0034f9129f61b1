package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Emulator-only Server-Sent Event streams for live views (the dashboard):
// connection-state changes and job progress. Each follows a bounded change
// feed; a reader that falls too far behind gets a "reset" event and reloads
// what it shows, so a slow browser never holds memory or slows the hub.

// liveInterval spaces the events of one stream, coalescing bursts (a job
// moving through thousands of devices) into one update per job.
const liveInterval = 250 * time.Millisecond

// keepaliveInterval keeps proxies and browsers from closing idle streams.
const keepaliveInterval = 15 * time.Second

// liveStreams ends the streams when the hub closes (http.Server.Shutdown
// waits for handlers, and these never end by themselves).
type liveStreams struct {
	once sync.Once // makes done
	end  sync.Once // closes done: the HTTPS and HTTP servers both call EndLiveStreams
	done chan struct{}
}

func (l *liveStreams) ch() chan struct{} {
	l.once.Do(func() { l.done = make(chan struct{}) })
	return l.done
}

// EndLiveStreams ends every connection-state and job stream; pass it to
// http.Server.RegisterOnShutdown. Each listener's server calls it, possibly
// at the same time.
func (s *Server) EndLiveStreams() {
	ch := s.live.ch()
	s.live.end.Do(func() { close(ch) })
}

// sse writes one Server-Sent Events response.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter, comment string) (*sse, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	e := &sse{w: w, rc: http.NewResponseController(w)}
	if _, err := io.WriteString(w, ": "+comment+"\n\n"); err != nil {
		return nil, err
	}
	return e, e.flush()
}

func (e *sse) event(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// A write to a stalled client must not hang the handler forever.
	_ = e.rc.SetWriteDeadline(time.Now().Add(keepaliveInterval))
	_, err = io.WriteString(e.w, "event: "+name+"\ndata: "+string(b)+"\n\n")
	return err
}

func (e *sse) keepalive() error {
	_ = e.rc.SetWriteDeadline(time.Now().Add(keepaliveInterval))
	if _, err := io.WriteString(e.w, ": keepalive\n\n"); err != nil {
		return err
	}
	return e.flush()
}

func (e *sse) flush() error { return e.rc.Flush() }

// done clears the write deadline the events set, which would otherwise
// outlive the stream on the connection.
func (e *sse) done() { _ = e.rc.SetWriteDeadline(time.Time{}) }

// connectionEvent is one "connection" event.
type connectionEvent struct {
	DeviceID                   string `json:"deviceId"`
	ModuleID                   string `json:"moduleId,omitempty"`
	ConnectionState            string `json:"connectionState"`
	ConnectionStateUpdatedTime string `json:"connectionStateUpdatedTime"`
}

// streamConnections is GET /_emulator/connections/stream?deviceId=: one
// "connection" event per connect or disconnect from now on ("reset" when
// events were lost).
func (s *Server) streamConnections(w http.ResponseWriter, r *http.Request) error {
	only := r.URL.Query().Get("deviceId")
	feed := s.Connections.ConnectionChanges()
	cursor, wake := feed.Cursor()
	out, err := startSSE(w, "iothub-emulator connection-state stream")
	if err != nil {
		return nil
	}
	defer out.done()
	keepalive := time.NewTicker(keepaliveInterval)
	defer keepalive.Stop()
	for {
		select {
		case <-wake:
		case <-keepalive.C:
			if out.keepalive() != nil {
				return nil
			}
			continue
		case <-r.Context().Done():
			return nil
		case <-s.live.ch():
			return nil
		}
		var items []registry.ConnectionChange
		var lost bool
		items, cursor, lost, wake = feed.Since(cursor)
		if lost && out.event("reset", map[string]string{"reason": "events were lost; reload"}) != nil {
			return nil
		}
		for _, c := range items {
			if only != "" && c.DeviceID != only {
				continue
			}
			if out.event("connection", connectionEvent{DeviceID: c.DeviceID, ModuleID: c.ModuleID, ConnectionState: c.State,
				ConnectionStateUpdatedTime: twins.FormatTime(c.Time)}) != nil {
				return nil
			}
		}
		if out.flush() != nil {
			return nil
		}
	}
}

// streamJobs is GET /_emulator/jobs/stream?jobId=: a "job" event (the
// hub's job response, as GET /jobs/v2/{id} returns it) whenever a job is
// created, starts, makes progress or finishes, at most one per job every
// liveInterval.
func (s *Server) streamJobs(w http.ResponseWriter, r *http.Request) error {
	only := r.URL.Query().Get("jobId")
	feed := s.Jobs.Changes()
	cursor, wake := feed.Cursor()
	out, err := startSSE(w, "iothub-emulator job progress stream")
	if err != nil {
		return nil
	}
	defer out.done()
	keepalive := time.NewTicker(keepaliveInterval)
	defer keepalive.Stop()
	if only != "" {
		// The job's state now, so a late subscriber does not wait for news.
		if j, err := s.Jobs.Get(ctx(r), only); err == nil {
			if out.event("job", jobResponse(j)) != nil || out.flush() != nil {
				return nil
			}
		}
	}
	for {
		select {
		case <-wake:
		case <-keepalive.C:
			if out.keepalive() != nil {
				return nil
			}
			continue
		case <-r.Context().Done():
			return nil
		case <-s.live.ch():
			return nil
		}
		var ids []string
		var lost bool
		ids, cursor, lost, wake = feed.Since(cursor)
		if lost && out.event("reset", map[string]string{"reason": "events were lost; reload"}) != nil {
			return nil
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] || (only != "" && id != only) {
				continue
			}
			seen[id] = true
			j, err := s.Jobs.Get(ctx(r), id)
			if err != nil {
				continue // deleted meanwhile
			}
			if out.event("job", jobResponse(j)) != nil {
				return nil
			}
		}
		if out.flush() != nil {
			return nil
		}
		// Coalesce: what changes in the next moment arrives in one batch.
		select {
		case <-time.After(liveInterval):
		case <-r.Context().Done():
			return nil
		case <-s.live.ch():
			return nil
		}
	}
}
