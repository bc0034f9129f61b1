// Package blobstorage reaches an Azure Storage account (Azurite locally) for
// file upload: it parses the account's connection string, signs service
// and account SAS tokens with the account key, creates the upload container
// and reads blob sizes. It implements fileupload.Storage.
package blobstorage

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/fileupload"
)

// sasVersion is the storage service version the SAS tokens are signed for;
// Azurite and Azure Storage both accept it.
const sasVersion = "2019-12-12"

// Account is a storage account from a connection string.
type Account struct {
	Name string
	Key  []byte
	// Endpoint is the blob endpoint, e.g. https://127.0.0.1:10000/devstoreaccount1
	// or https://account.blob.core.windows.net (no trailing slash).
	Endpoint *url.URL
}

// Azurite's well-known development account.
const (
	devAccountName = "devstoreaccount1"
	devAccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// ParseConnectionString reads an Azure Storage connection string:
// AccountName, AccountKey and either BlobEndpoint or
// DefaultEndpointsProtocol and EndpointSuffix; UseDevelopmentStorage=true
// means Azurite's default account on http://127.0.0.1:10000.
func ParseConnectionString(cs string) (*Account, error) {
	fields := map[string]string{}
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("storage connection string: %q is not key=value", part)
		}
		fields[strings.ToLower(k)] = v
	}
	if strings.EqualFold(fields["usedevelopmentstorage"], "true") {
		fields["accountname"], fields["accountkey"] = devAccountName, devAccountKey
		if fields["blobendpoint"] == "" {
			fields["blobendpoint"] = "http://127.0.0.1:10000/" + devAccountName
		}
	}
	a := &Account{Name: fields["accountname"]}
	if a.Name == "" || fields["accountkey"] == "" {
		return nil, errors.New("storage connection string: AccountName and AccountKey are required")
	}
	key, err := base64.StdEncoding.DecodeString(fields["accountkey"])
	if err != nil {
		return nil, fmt.Errorf("storage connection string: AccountKey is not base64: %w", err)
	}
	a.Key = key
	endpoint := fields["blobendpoint"]
	if endpoint == "" {
		proto, suffix := fields["defaultendpointsprotocol"], fields["endpointsuffix"]
		if proto == "" {
			proto = "https"
		}
		if suffix == "" {
			suffix = "core.windows.net"
		}
		endpoint = proto + "://" + a.Name + ".blob." + suffix
	}
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("storage connection string: BlobEndpoint %q is not an http(s) URL", endpoint)
	}
	a.Endpoint = u
	return a, nil
}

// Client is a fileupload.Storage over one account.
type Client struct {
	account *Account
	http    *http.Client
	now     func() time.Time

	mu      sync.Mutex
	ensured map[string]bool
}

var _ fileupload.Storage = (*Client)(nil)

// New returns a client; httpClient nil means one with a 30 s timeout (its
// TLS roots are the system's, which SSL_CERT_FILE can replace).
func New(a *Account, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{account: a, http: httpClient, now: time.Now, ensured: map[string]bool{}}
}

// HostName is the endpoint without its scheme: devices build
// https://{hostName}/{container}/{blob}{sas}.
func (c *Client) HostName() string {
	return c.account.Endpoint.Host + c.account.Endpoint.Path
}

// BlobURL is the blob's URI.
func (c *Client) BlobURL(container, blob string) string {
	return c.account.Endpoint.String() + "/" + container + "/" + escapeBlob(blob)
}

// escapeBlob escapes each segment of a blob name, keeping the slashes.
func escapeBlob(blob string) string {
	segs := strings.Split(blob, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func (c *Client) sign(s string) string {
	m := hmac.New(sha256.New, c.account.Key)
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func sasTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// serviceSAS signs a blob service SAS (version 2019-12-12 string-to-sign).
func (c *Client) serviceSAS(container, blob, perms string, expiry time.Time) string {
	se := sasTime(expiry)
	resource := "/blob/" + c.account.Name + "/" + container + "/" + blob
	toSign := strings.Join([]string{perms, "", se, resource, "", "", "", sasVersion, "b", "", "", "", "", "", ""}, "\n")
	q := url.Values{}
	q.Set("sv", sasVersion)
	q.Set("sr", "b")
	q.Set("sp", perms)
	q.Set("se", se)
	q.Set("sig", c.sign(toSign))
	return "?" + q.Encode()
}

// BlobSAS lets its holder read, create and write one blob until expiry.
func (c *Client) BlobSAS(container, blob string, expiry time.Time) string {
	return c.serviceSAS(container, blob, "rcw", expiry)
}

// accountSAS signs an account SAS for container operations on the blob
// service, valid for a few minutes.
func (c *Client) accountSAS(perms string) string {
	se := sasTime(c.now().Add(10 * time.Minute))
	toSign := strings.Join([]string{c.account.Name, perms, "b", "sc", "", se, "", "", sasVersion, ""}, "\n")
	q := url.Values{}
	q.Set("sv", sasVersion)
	q.Set("ss", "b")
	q.Set("srt", "sc")
	q.Set("sp", perms)
	q.Set("se", se)
	q.Set("sig", c.sign(toSign))
	return q.Encode()
}

// EnsureContainer creates the container once; an existing one is fine.
func (c *Client) EnsureContainer(ctx context.Context, container string) error {
	c.mu.Lock()
	done := c.ensured[container]
	c.mu.Unlock()
	if done {
		return nil
	}
	u := c.account.Endpoint.String() + "/" + container + "?restype=container&" + c.accountSAS("rwc")
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("x-ms-version", sasVersion)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
		return fmt.Errorf("create container %s: %s %s", container, resp.Status, body)
	}
	c.mu.Lock()
	c.ensured[container] = true
	c.mu.Unlock()
	return nil
}

// BlobSize reads the blob's Content-Length with a HEAD.
func (c *Client) BlobSize(ctx context.Context, container, blob string) (int64, error) {
	u := c.BlobURL(container, blob) + c.serviceSAS(container, blob, "r", c.now().Add(10*time.Minute))
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("x-ms-version", sasVersion)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("blob %s/%s: %s", container, blob, resp.Status)
	}
	return resp.ContentLength, nil
}
