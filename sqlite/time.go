package sqlite

import "time"

// timeLayout is how times are stored: UTC with 7 fractional digits, the hub's
// own rendering, so string comparisons in queries order correctly.
const timeLayout = "2006-01-02T15:04:05.0000000Z"

const zeroTime = "0001-01-01T00:00:00.0000000Z"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t.UTC()
}
