package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// tokenRequest is what `iothub-emulator token` signs: a policy's token, or a
// device's or module's.
type tokenRequest struct {
	hostname         string
	policy           string // shared access policy name; empty for a device
	deviceID         string
	moduleID         string
	key              string // base64 key; for a device fetched when empty
	ttl              time.Duration
	connectionString bool
}

// tokenCommand is `iothub-emulator token`: it prints a SAS token (or a
// connection string) for a shared access policy, a device or a module. Policy
// keys are the well-known ones (iothubowner's from --owner-key); a device's or
// module's key comes from --key or from the running emulator's registry.
func tokenCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	var r tokenRequest
	fs.StringVar(&r.policy, "policy", "", "shared access policy: iothubowner (default), service, registryRead, registryReadWrite or device")
	fs.StringVar(&r.deviceID, "device", "", "sign for this device instead of a policy")
	fs.StringVar(&r.moduleID, "module", "", "sign for this module of --device")
	fs.StringVar(&r.key, "key", "", "base64 key to sign with (default: the policy's well-known key, or the device's primary key read from the emulator at --url)")
	fs.DurationVar(&r.ttl, "ttl", time.Hour, "how long the token is valid")
	fs.BoolVar(&r.connectionString, "connection-string", false, "print a connection string instead of a token")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: iothub-emulator token [flags]

Prints a SAS token, or with --connection-string a connection string, for a
shared access policy (iothubowner unless --policy says otherwise), a device
(--device) or a module (--device and --module). Examples:

  SAS=$(iothub-emulator token)                            # iothubowner, valid 1h
  iothub-emulator token --policy service --ttl 24h
  iothub-emulator token --device dev1                     # key read from the emulator
  iothub-emulator token --device dev1 --connection-string
  iothub-emulator token --device dev1 --module m1 --key BASE64KEY

Flags:
`)
		fs.PrintDefaults()
	}
	if len(args) > 0 && isHelp(args[0]) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q (see token --help)", fs.Arg(0))
	}
	c, err := client()
	if err != nil {
		return err
	}
	r.hostname = c.hostname
	switch {
	case r.moduleID != "" && r.deviceID == "":
		return errors.New("token: --module needs --device")
	case r.deviceID != "" && r.policy != "":
		return errors.New("token: give --policy or --device, not both")
	case r.ttl <= 0:
		return errors.New("token: --ttl must be positive")
	}
	if r.deviceID == "" {
		if r.policy == "" {
			r.policy = "iothubowner"
		}
		if r.key == "" {
			p, ok := (&sasauth.Authenticator{Policies: sasauth.DefaultPolicies(c.key)}).Policy(r.policy)
			if !ok {
				return fmt.Errorf("token: no policy %q (iothubowner, service, registryRead, registryReadWrite, device)", r.policy)
			}
			r.policy, r.key = p.Name, p.PrimaryKey
		}
	} else if r.key == "" {
		if r.key, err = c.identityKey(ctx, r.deviceID, r.moduleID); err != nil {
			return fmt.Errorf("token: %w (or give the key with --key)", err)
		}
	}
	out, err := r.sign(time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, out)
	return nil
}

// sign returns the token or connection string; now is the clock.
func (r *tokenRequest) sign(now time.Time) (string, error) {
	if r.connectionString {
		// A connection string carries the key; the SDKs sign their own tokens.
		if _, err := base64.StdEncoding.DecodeString(r.key); err != nil {
			return "", fmt.Errorf("key is not base64: %w", err)
		}
		if r.deviceID == "" {
			return fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", r.hostname, r.policy, r.key), nil
		}
		cs := "HostName=" + r.hostname + ";DeviceId=" + r.deviceID
		if r.moduleID != "" {
			cs += ";ModuleId=" + r.moduleID
		}
		return cs + ";SharedAccessKey=" + r.key, nil
	}
	resource := r.hostname
	if r.deviceID != "" {
		resource += "/devices/" + r.deviceID
		if r.moduleID != "" {
			resource += "/modules/" + r.moduleID
		}
	}
	return sasauth.Sign(resource, r.key, r.policy, now.Add(r.ttl))
}

// identityKey reads a device's or module's primary symmetric key from the
// registry (GET /devices/{id}[/modules/{mid}]).
func (c *apiClient) identityKey(ctx context.Context, deviceID, moduleID string) (string, error) {
	path := "/devices/" + pathEscape(deviceID)
	if moduleID != "" {
		path += "/modules/" + pathEscape(moduleID)
	}
	var identity struct {
		Authentication struct {
			Type         string `json:"type"`
			SymmetricKey struct {
				PrimaryKey string `json:"primaryKey"`
			} `json:"symmetricKey"`
		} `json:"authentication"`
	}
	if _, err := c.do(ctx, "GET", path, nil, nil, &identity); err != nil {
		return "", err
	}
	key := identity.Authentication.SymmetricKey.PrimaryKey
	if key == "" {
		return "", fmt.Errorf("%s authenticates with %q, not a symmetric key", strings.TrimPrefix(path, "/devices/"), identity.Authentication.Type)
	}
	return key, nil
}
