package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// A full disk makes the REST API answer 503 ServiceUnavailable, which
// clients retry, not 500 (issue #13).
func TestREST_FullDiskIsServiceUnavailable(t *testing.T) {
	h, err := Open(context.Background(), Config{Hostname: "localhost", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// The writer is one connection: cap its database at its current size.
	var pages int
	if err := h.db.Writer().QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Writer().Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	tok, _ := sasauth.Sign("localhost", sasauth.DefaultOwnerKey, "iothubowner", time.Now().Add(time.Hour))
	for i := range 200 {
		body := fmt.Sprintf(`{"deviceId":"d%d","tags":{"pad":"%s"}}`, i, strings.Repeat("x", 2000))
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/devices/d%d?api-version=2021-04-12", h.Addr("http"), i), strings.NewReader(body))
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			continue
		case http.StatusServiceUnavailable:
			if resp.Header.Get("iothub-errorcode") != "ServiceUnavailable" {
				t.Errorf("503 with error code %q: %s", resp.Header.Get("iothub-errorcode"), b)
			}
			return
		default:
			t.Fatalf("device %d on a full disk: %d %s, want 503", i, resp.StatusCode, b)
		}
	}
	t.Fatal("200 devices fit in a database capped at its size")
}
