package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// apiClient calls a running emulator's REST API, by default over its plain
// HTTP listener, signed with the iothubowner key, for the CLI subcommands.
type apiClient struct {
	base     string
	hostname string
	key      string
	caFile   string
	http     *http.Client
}

// clientFlags adds the flags that locate a running emulator; the returned
// function builds the client once the flags are parsed.
func clientFlags(fs *flag.FlagSet) func() (*apiClient, error) {
	u := fs.String("url", envOr("IOTHUB_EMULATOR_URL", "http://127.0.0.1:8080"), "the emulator's HTTP or HTTPS listener")
	ca := fs.String("ca", envOr("IOTHUB_EMULATOR_CA", ""), "CA certificate (PEM) to trust for an https:// --url (default: the system's)")
	host := fs.String("hostname", envOr("IOTHUB_EMULATOR_HOSTNAME", "localhost"), "the hub's host name (signs the token)")
	key := fs.String("owner-key", envOr("IOTHUB_EMULATOR_OWNER_KEY", sasauth.DefaultOwnerKey), "the iothubowner key")
	return func() (*apiClient, error) {
		hc, err := httpClient(*ca, 30*time.Second)
		if err != nil {
			return nil, err
		}
		return &apiClient{base: strings.TrimRight(*u, "/"), hostname: *host, key: *key, caFile: *ca, http: hc}, nil
	}
}

// httpClient trusts caFile, when given, instead of the system's roots.
// timeout 0 means none (for long-lived streams).
func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	c := &http.Client{Timeout: timeout}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.Transport = tr
	return c, nil
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// do sends a request and decodes a JSON answer into out; the hub's error
// body becomes the error text.
func (c *apiClient) do(ctx context.Context, method, path string, body any, headers map[string]string, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path+sep+"api-version=2021-04-12", rd)
	if err != nil {
		return nil, err
	}
	tok, err := sasauth.Sign(c.hostname, c.key, "iothubowner", time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is the emulator running at %s? %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Message)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, err
		}
	}
	return resp.Header, nil
}

func pathEscape(s string) string { return url.PathEscape(s) }
