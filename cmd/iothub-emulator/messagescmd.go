package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// messageView is the part of the emulator's message JSON the CLI prints.
type messageView struct {
	SequenceNumber   int64             `json:"sequenceNumber"`
	EnqueuedTimeUTC  string            `json:"enqueuedTimeUtc"`
	DeviceID         string            `json:"deviceId"`
	ModuleID         string            `json:"moduleId"`
	Body             string            `json:"body"`
	BodyEncoding     string            `json:"bodyEncoding"`
	Properties       map[string]string `json:"properties"`
	SystemProperties map[string]string `json:"systemProperties"`
}

// formatMessage renders one line: time, sequence number, sender, body and
// properties (system ones with their short MQTT names).
func formatMessage(m *messageView) string {
	var b strings.Builder
	t := m.EnqueuedTimeUTC
	if pt, err := time.Parse(time.RFC3339Nano, t); err == nil {
		t = pt.Local().Format("15:04:05.000")
	}
	who := m.DeviceID
	if m.ModuleID != "" {
		who += "/" + m.ModuleID
	}
	fmt.Fprintf(&b, "%s #%d %s ", t, m.SequenceNumber, who)
	if m.BodyEncoding == "base64" {
		b.WriteString("base64:" + m.Body)
	} else {
		b.WriteString(strconv.Quote(m.Body))
	}
	var props []string
	for _, k := range []struct{ name, short string }{{"message-id", "mid"}, {"correlation-id", "cid"}, {"content-type", "ct"}, {"content-encoding", "ce"}} {
		if v := m.SystemProperties[k.name]; v != "" {
			props = append(props, "$."+k.short+"="+v)
		}
	}
	keys := make([]string, 0, len(m.Properties))
	for k := range m.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		props = append(props, k+"="+m.Properties[k])
	}
	if len(props) > 0 {
		b.WriteString(" " + strings.Join(props, " "))
	}
	return b.String()
}

// messagesCommand is `iothub-emulator messages tail [--device ID] [--from N] [--json]`.
func messagesCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("messages tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	device := fs.String("device", "", "only this device's messages")
	module := fs.String("module", "", "only this module's messages (with --device)")
	from := fs.Int64("from", 0, "replay stored messages from this sequence number first (1: everything kept)")
	asJSON := fs.Bool("json", false, "print each message as a JSON line")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: iothub-emulator messages tail [--device ID] [--module ID] [--from SEQ] [--json] [flags]\n\nFollows telemetry as the emulator stores it.\n\n")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return fmt.Errorf("messages needs a command: tail")
	}
	if isHelp(args[0]) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil
	}
	if args[0] != "tail" {
		return fmt.Errorf("unknown messages command %q (tail; see messages --help)", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *device != "" {
		q.Set("deviceId", *device)
	}
	if *module != "" {
		q.Set("moduleId", *module)
	}
	if *from > 0 {
		q.Set("from", strconv.FormatInt(*from, 10))
	}
	var last int64
	// Follow until interrupted; reconnect (resuming after the last message
	// seen) when the emulator restarts.
	for {
		err := c.stream(ctx, q, last, func(m *messageView, raw []byte) {
			last = m.SequenceNumber
			if *asJSON {
				fmt.Fprintln(stdout, string(raw))
			} else {
				fmt.Fprintln(stdout, formatMessage(m))
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		fmt.Fprintf(stderr, "messages tail: %v; reconnecting\n", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// stream reads the SSE stream until it ends.
func (c *apiClient) stream(ctx context.Context, q url.Values, lastID int64, fn func(*messageView, []byte)) error {
	u := c.base + "/_emulator/messages/stream"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	tok, err := sasauth.Sign(c.hostname, c.key, "iothubowner", time.Now().Add(24*time.Hour))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("Accept", "text/event-stream")
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
	}
	hc, err := httpClient(c.caFile, 0) // no timeout: the stream is long-lived
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("is the emulator running at %s? %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 2<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var m messageView
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			continue
		}
		fn(&m, []byte(data))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}
