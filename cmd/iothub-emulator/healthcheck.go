package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// healthcheck asks a running emulator whether it is ready; the container
// image has no curl, so its HEALTHCHECK runs this. Without --url it derives
// the address from the emulator's own settings (IOTHUB_EMULATOR_BIND and
// IOTHUB_EMULATOR_HTTP_PORT, as the container sets them).
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	emu, err := parseFlags(nil, stderr)
	if err != nil {
		return err
	}
	host := emu.bind
	if host == "0.0.0.0" || host == "::" || host == "" {
		host = "127.0.0.1"
	}
	def := envOr("IOTHUB_EMULATOR_URL", "")
	if def == "" && emu.httpPort != 0 {
		def = "http://" + net.JoinHostPort(host, strconv.Itoa(emu.httpPort))
	}
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", def, "the emulator's HTTP or HTTPS listener")
	ca := fs.String("ca", envOr("IOTHUB_EMULATOR_CA", ""), "CA certificate (PEM) to trust for an https:// --url")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: iothub-emulator healthcheck [--url URL] [--ca FILE]\n\nExits 0 when the emulator at --url answers GET /_emulator/health with 200.\n\nFlags:\n")
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
		return fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	if *base == "" {
		return fmt.Errorf("healthcheck: the HTTP listener is off (--http-port 0): give --url")
	}
	hc, err := httpClient(*ca, *timeout)
	if err != nil {
		return err
	}
	url := strings.TrimRight(*base, "/") + "/_emulator/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
