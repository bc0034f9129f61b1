package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// jobView is the part of the hub's JobResponse the CLI shows.
type jobView struct {
	JobID          string `json:"jobId"`
	Type           string `json:"type"`
	Status         string `json:"status"`
	QueryCondition string `json:"queryCondition"`
	CreatedTime    string `json:"createdTime"`
	StartTime      string `json:"startTime"`
	EndTime        string `json:"endTime"`
	FailureReason  string `json:"failureReason"`
	Stats          struct {
		DeviceCount, FailedCount, SucceededCount, RunningCount, PendingCount int
	} `json:"deviceJobStatistics"`
}

func (j *jobView) finished() bool {
	return j.Status == "completed" || j.Status == "failed" || j.Status == "cancelled"
}

// progressBar renders "[#####.....] 50% 5/10 (1 failed)".
func progressBar(j *jobView, width int) string {
	s := j.Stats
	done := s.SucceededCount + s.FailedCount
	pct := 0
	if s.DeviceCount > 0 {
		pct = 100 * done / s.DeviceCount
	} else if j.finished() {
		pct = 100
	}
	filled := width * pct / 100
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	out := fmt.Sprintf("[%s] %3d%% %d/%d", bar, pct, done, s.DeviceCount)
	if s.FailedCount > 0 {
		out += fmt.Sprintf(" (%d failed)", s.FailedCount)
	}
	if s.RunningCount > 0 {
		out += fmt.Sprintf(" %d running", s.RunningCount)
	}
	return out
}

// jobsCommand is `iothub-emulator jobs list|show ID|watch ID`.
func jobsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	interval := fs.Duration("interval", 500*time.Millisecond, "refresh interval of watch")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: iothub-emulator jobs list | show JOB_ID | watch JOB_ID [flags]\n\n")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return fmt.Errorf("jobs needs a command: list, show or watch")
	}
	if isHelp(args[0]) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil
	}
	verb := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		var list []jobView
		if _, err := c.do(ctx, "GET", "/jobs/v2/query", nil, map[string]string{"x-ms-max-item-count": "1000"}, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tTYPE\tSTATUS\tPROGRESS\tCREATED")
		for i := range list {
			j := &list[i]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.JobID, j.Type, j.Status, progressBar(j, 10), j.CreatedTime)
		}
		return tw.Flush()
	case "show", "watch":
		if fs.NArg() != 1 {
			return fmt.Errorf("jobs %s needs a job id", verb)
		}
		id := fs.Arg(0)
		for {
			var j jobView
			if _, err := c.do(ctx, "GET", "/jobs/v2/"+pathEscape(id), nil, nil, &j); err != nil {
				return err
			}
			if verb == "show" || j.finished() {
				return showJob(ctx, c, &j, stdout)
			}
			fmt.Fprintf(stdout, "\r%s %-9s %s", j.JobID, j.Status, progressBar(&j, 30))
			select {
			case <-ctx.Done():
				fmt.Fprintln(stdout)
				return nil
			case <-time.After(*interval):
			}
		}
	}
	return fmt.Errorf("unknown jobs command %q (list, show, watch)", verb)
}

// showJob prints a job and its per-device outcomes (from devices.jobs).
func showJob(ctx context.Context, c *apiClient, j *jobView, w io.Writer) error {
	fmt.Fprintf(w, "\rjob %s (%s): %s %s\n", j.JobID, j.Type, j.Status, progressBar(j, 30))
	fmt.Fprintf(w, "  query: %s\n  created %s, started %s", j.QueryCondition, j.CreatedTime, j.StartTime)
	if j.EndTime != "" {
		fmt.Fprintf(w, ", ended %s", j.EndTime)
	}
	fmt.Fprintln(w)
	if j.FailureReason != "" {
		fmt.Fprintf(w, "  failure: %s\n", j.FailureReason)
	}
	var records []struct {
		DeviceID string          `json:"deviceId"`
		ModuleID string          `json:"moduleId"`
		Status   string          `json:"status"`
		Outcome  json.RawMessage `json:"outcome"`
		Error    *struct {
			Code        string `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	q := map[string]string{"query": "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '" + strings.ReplaceAll(j.JobID, "'", "\\'") + "'"}
	if _, err := c.do(ctx, "POST", "/devices/query", q, map[string]string{"x-ms-max-item-count": "1000"}, &records); err != nil {
		fmt.Fprintf(w, "  (per-device outcomes unavailable: %v)\n", err)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEVICE\tSTATUS\tOUTCOME")
	for _, r := range records {
		id := r.DeviceID
		if r.ModuleID != "" {
			id += "/" + r.ModuleID
		}
		outcome := string(r.Outcome)
		if r.Error != nil {
			outcome = r.Error.Code + ": " + r.Error.Description
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", id, r.Status, outcome)
	}
	return tw.Flush()
}
