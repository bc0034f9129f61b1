package blobstorage

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseConnectionString(t *testing.T) {
	const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	tests := []struct {
		name, cs, host, blobURL string
		ok                      bool
	}{
		{"azurite https", "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=" + key + ";BlobEndpoint=https://127.0.0.1:10000/devstoreaccount1;",
			"127.0.0.1:10000/devstoreaccount1", "https://127.0.0.1:10000/devstoreaccount1/c/d1/a%20b.txt", true},
		{"development storage", "UseDevelopmentStorage=true", "127.0.0.1:10000/devstoreaccount1", "http://127.0.0.1:10000/devstoreaccount1/c/d1/a%20b.txt", true},
		{"azure", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + key + ";EndpointSuffix=core.windows.net",
			"acct.blob.core.windows.net", "https://acct.blob.core.windows.net/c/d1/a%20b.txt", true},
		{"trailing slash on the endpoint", "AccountName=a;AccountKey=" + key + ";BlobEndpoint=https://h:1/a/",
			"h:1/a", "https://h:1/a/c/d1/a%20b.txt", true},
		{"no key", "AccountName=a;BlobEndpoint=https://h/a", "", "", false},
		{"key not base64", "AccountName=a;AccountKey=***;BlobEndpoint=https://h/a", "", "", false},
		{"not key=value", "AccountName", "", "", false},
		{"ftp endpoint", "AccountName=a;AccountKey=" + key + ";BlobEndpoint=ftp://h/a", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseConnectionString(tt.cs)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			c := New(a, nil)
			if c.HostName() != tt.host || c.BlobURL("c", "d1/a b.txt") != tt.blobURL {
				t.Fatalf("host %q, blob URL %q", c.HostName(), c.BlobURL("c", "d1/a b.txt"))
			}
		})
	}
}

func TestBlobSAS(t *testing.T) {
	a, err := ParseConnectionString("UseDevelopmentStorage=true")
	if err != nil {
		t.Fatal(err)
	}
	c := New(a, nil)
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	sas := c.BlobSAS("fileupload", "d1/x.txt", exp)
	if !strings.HasPrefix(sas, "?") {
		t.Fatalf("SAS %q does not start with ?", sas)
	}
	q, err := url.ParseQuery(sas[1:])
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"sv": sasVersion, "sr": "b", "sp": "rcw", "se": "2030-01-02T03:04:05Z"} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, q.Get(k), want)
		}
	}
	// The signature covers the blob: another blob or expiry signs differently.
	if sas == c.BlobSAS("fileupload", "d1/y.txt", exp) || sas == c.BlobSAS("fileupload", "d1/x.txt", exp.Add(time.Second)) {
		t.Fatal("the signature does not depend on the blob and expiry")
	}
}
