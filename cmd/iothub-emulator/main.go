// Command iothub-emulator runs a local Azure IoT Hub: MQTT for devices, the
// service REST API, SAS security and TLS, with its state in SQLite.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/throttling"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // --help was asked for and printed
		}
		fmt.Fprintln(os.Stderr, "iothub-emulator:", err)
		os.Exit(1)
	}
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// options are the command's flags; each also reads IOTHUB_EMULATOR_<FLAG>.
type options struct {
	bind                                     string
	mqttsPort, httpsPort, mqttPort, httpPort int
	amqpsPort, amqpPort, partitions          int
	hostname, dataDir                        string
	inMemory                                 bool
	tlsCert, tlsKey                          string
	tlsSANs, deviceCAs                       stringList
	ownerKey, logLevel, logFormat            string
	messageRetentionCount                    int
	messageRetention                         time.Duration
	jobWorkers, maxActiveJobs                int
	jobRetention                             time.Duration
	seed                                     string
	dpsIDScope                               string
	maxConnections                           int
	fakeClock                                bool
	sku                                      string
	units                                    int
	storageConnectionString                  string
	fileUploadContainer                      string
	configurationInterval                    time.Duration
	exportCA                                 string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("iothub-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := hub.DefaultConfig()
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	bind, _, _ := net.SplitHostPort(def.HTTPAddr)
	fs.StringVar(&o.bind, "bind", bind, "address to listen on (0.0.0.0 for all interfaces)")
	fs.IntVar(&o.mqttsPort, "mqtts-port", port(def.MQTTSAddr), "MQTT over TLS port, as devices use it (0 disables)")
	fs.IntVar(&o.httpsPort, "https-port", port(def.HTTPSAddr), "HTTPS port: service REST API and MQTT over WebSockets (0 disables)")
	fs.IntVar(&o.mqttPort, "mqtt-port", port(def.MQTTAddr), "plain MQTT port for raw clients (0 disables)")
	fs.IntVar(&o.httpPort, "http-port", port(def.HTTPAddr), "plain HTTP port for curl and scripts (0 disables)")
	fs.IntVar(&o.amqpsPort, "amqps-port", port(def.AMQPSAddr), "AMQP over TLS port: service-side C2D send and feedback (0 disables)")
	fs.IntVar(&o.amqpPort, "amqp-port", port(def.AMQPAddr), "plain AMQP port for Event Hubs clients with UseDevelopmentEmulator=true (0 disables)")
	fs.IntVar(&o.partitions, "partitions", def.Partitions, "partition count of the Event Hub-compatible endpoint (1 to 32)")
	fs.StringVar(&o.hostname, "hostname", def.Hostname, "the hub's host name, used in certificates, SAS resource URIs and connection strings")
	fs.StringVar(&o.dataDir, "data-dir", def.DataDir, "directory for the database and generated certificates")
	fs.BoolVar(&o.inMemory, "in-memory", def.InMemory, "keep nothing on disk (for tests)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "server certificate (PEM chain) to use instead of the generated one")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key of --tls-cert")
	fs.Var(&o.tlsSANs, "tls-san", "extra DNS name or IP for the generated certificate (repeatable)")
	fs.Var(&o.deviceCAs, "device-ca", "CA certificate file for certificateAuthority X.509 devices (repeatable)")
	fs.StringVar(&o.ownerKey, "owner-key", "", "base64 key of the iothubowner policy (default: the well-known key)")
	fs.IntVar(&o.messageRetentionCount, "message-retention-count", def.MessageRetentionCount, "telemetry messages kept for /_emulator/messages (0: no count bound)")
	fs.DurationVar(&o.messageRetention, "message-retention", def.MessageRetentionAge, "how long telemetry messages are kept (0: no age bound)")
	fs.IntVar(&o.jobWorkers, "job-workers", def.JobWorkers, "device operations one job runs at once")
	fs.IntVar(&o.maxActiveJobs, "max-active-jobs", def.MaxActiveJobs, "jobs that may be queued, scheduled or running at once (0: no limit; with --sku, the tier's: 1 for F1 and S1, 5 for S2, 10 for S3)")
	fs.DurationVar(&o.jobRetention, "job-retention", def.JobRetention, "how long finished jobs are kept")
	fs.StringVar(&o.dpsIDScope, "dps-id-scope", def.DPSIDScope, "ID scope of the Device Provisioning Service that devices name")
	fs.StringVar(&o.seed, "seed", "", "JSON or YAML file of devices to create at start if they do not exist, and of simulated devices to run (see examples/seed.json)")
	fs.StringVar(&o.storageConnectionString, "storage-connection-string", "", "Azure Storage (Azurite) connection string for device file upload (empty: file upload off)")
	fs.StringVar(&o.fileUploadContainer, "file-upload-container", "fileupload", "storage container that device file uploads go to (created if missing)")
	fs.DurationVar(&o.configurationInterval, "configuration-interval", 5*time.Second, "how often automatic device configurations are evaluated again (the hub: 5 minutes)")
	fs.IntVar(&o.maxConnections, "max-connections", def.MaxConnections, "connections open at once over all listeners (0: the open-file limit less 256)")
	fs.StringVar(&o.sku, "sku", "", "apply the throttles of this IoT Hub tier: F1, S1, S2 or S3 (empty: no throttling)")
	fs.IntVar(&o.units, "units", 1, "units of --sku; the tier's per-unit throttles scale with it")
	fs.BoolVar(&o.fakeClock, "fake-clock", false, "run on a clock that moves only through POST /_emulator/clock (emulator-only, for resilience tests)")
	fs.StringVar(&o.exportCA, "export-ca", "", "also write the CA certificate (not its key) to this file, e.g. a folder shared with clients")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	// The environment sets defaults; flags given on the command line win.
	var envErr error
	given := map[string]bool{} // set by the environment or a flag
	fs.VisitAll(func(f *flag.Flag) {
		name := "IOTHUB_EMULATOR_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			given[f.Name] = true
			for _, part := range splitList(f, v) {
				if err := f.Value.Set(part); err != nil && envErr == nil {
					envErr = fmt.Errorf("%s=%q: %v", name, v, err)
				}
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// A tier brings its limit of concurrent jobs, unless it is given.
	if n, ok := throttling.MaxActiveJobs(o.sku); ok && !given["max-active-jobs"] {
		o.maxActiveJobs = n
	}
	return o, nil
}

// splitList lets repeatable flags take comma-separated values from the environment.
func splitList(f *flag.Flag, v string) []string {
	if _, ok := f.Value.(*stringList); ok {
		return strings.Split(v, ",")
	}
	return []string{v}
}

func (o *options) config(log *slog.Logger) hub.Config {
	addr := func(port int) string {
		if port == 0 {
			return ""
		}
		return net.JoinHostPort(o.bind, strconv.Itoa(port))
	}
	return hub.Config{
		Hostname:  o.hostname,
		MQTTSAddr: addr(o.mqttsPort), HTTPSAddr: addr(o.httpsPort), MQTTAddr: addr(o.mqttPort), HTTPAddr: addr(o.httpPort),
		AMQPSAddr: addr(o.amqpsPort), AMQPAddr: addr(o.amqpPort), Partitions: o.partitions,
		FallbackPorts: hub.DefaultConfig().FallbackPorts,
		DataDir:       o.dataDir, InMemory: o.inMemory,
		TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey, TLSSANs: o.tlsSANs,
		OwnerKey: o.ownerKey, DeviceCAFiles: o.deviceCAs,
		MessageRetentionCount: o.messageRetentionCount, MessageRetentionAge: o.messageRetention,
		JobWorkers: o.jobWorkers, MaxActiveJobs: o.maxActiveJobs, JobRetention: o.jobRetention,
		SeedFile:                o.seed,
		DPSIDScope:              o.dpsIDScope,
		StorageConnectionString: o.storageConnectionString,
		FileUpload:              fileupload.Config{Container: o.fileUploadContainer},
		Configurations:          configurations.Config{Interval: o.configurationInterval},
		MaxConnections:          o.maxConnections,
		Clock:                   o.clock(),
		SKU:                     o.sku,
		Units:                   o.units,
		Logger:                  log,
	}
}

// clock is the fake clock under --fake-clock (starting at the wall clock's
// now), else nil: the hub's wall clock.
func (o *options) clock() clock.Clock {
	if !o.fakeClock {
		return nil
	}
	return clock.NewFake(time.Now().UTC())
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", o.logFormat)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "healthcheck":
			return healthcheck(ctx, args[1:], stdout, stderr)
		case "token":
			return tokenCommand(ctx, args[1:], stdout, stderr)
		case "jobs":
			return jobsCommand(ctx, args[1:], stdout, stderr)
		case "messages":
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return messagesCommand(ctx, args[1:], stdout, stderr)
		}
		return fmt.Errorf("unknown command %q (see --help)", args[0])
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	startPprof(log)

	start := time.Now()
	h, err := hub.Open(ctx, o.config(log))
	if err != nil {
		return err
	}
	debugHub.Store(h)
	if o.exportCA != "" {
		if err := exportCA(h.CACertFile(), o.exportCA); err != nil {
			h.Close()
			return fmt.Errorf("--export-ca: %w", err)
		}
	}
	printBanner(ctx, stdout, h, time.Since(start))
	<-ctx.Done()
	log.Info("shutting down")
	return h.Close()
}

// usageHeader lists the subcommands; each has its own --help.
const usageHeader = `Usage: iothub-emulator [flags]
       iothub-emulator token [--policy NAME | --device ID [--module ID]] [--ttl D] [--connection-string]
       iothub-emulator jobs list | show JOB_ID | watch JOB_ID
       iothub-emulator messages tail [--device ID] [--module ID] [--from SEQ] [--json]
       iothub-emulator healthcheck [--url URL] [--ca FILE]

A local Azure IoT Hub. Every flag can also be set as IOTHUB_EMULATOR_<FLAG>,
e.g. IOTHUB_EMULATOR_HTTPS_PORT=8443. Flags win over the environment.
The subcommands reach a running emulator at --url (default
http://127.0.0.1:8080, or IOTHUB_EMULATOR_URL); see "iothub-emulator token --help".

Flags of the emulator:
`

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// bannerSeedLines bounds how many seeded identities the banner lists.
const bannerSeedLines = 20

func printBanner(ctx context.Context, w io.Writer, h *hub.Hub, took time.Duration) {
	fmt.Fprintf(w, "IoT Hub emulator ready in %s\n", took.Round(time.Millisecond))
	for _, l := range []struct{ name, what string }{
		{"mqtts", "MQTT over TLS (devices)"},
		{"https", "HTTPS: REST API, MQTT and AMQP over WebSockets at /$iothub/websocket"},
		{"amqps", "AMQP over TLS (service: C2D send, feedback; Event Hub-compatible endpoint)"},
		{"amqp", "AMQP, no TLS (Event Hub-compatible endpoint, UseDevelopmentEmulator=true)"},
		{"mqtt", "MQTT, no TLS"},
		{"http", "HTTP: REST API, no TLS"},
	} {
		if a := h.Addr(l.name); a != "" {
			fmt.Fprintf(w, "  %-6s %-22s %s\n", l.name, a, l.what)
		}
	}
	if a := h.Addr("http"); a != "" {
		fmt.Fprintf(w, "  Dashboard: http://%s/ui/\n", a)
	} else if a := h.Addr("https"); a != "" {
		fmt.Fprintf(w, "  Dashboard: https://%s/ui/\n", a)
	}
	if sims := h.Simulator.List(); len(sims) > 0 {
		n := 0
		for _, s := range sims {
			n += s.DeviceCount
		}
		fmt.Fprintf(w, "  Simulated devices: %d (in %d simulations of the seed file)\n", n, len(sims))
	}
	fmt.Fprintf(w, "  CA certificate to trust: %s\n", h.CACertFile())
	fmt.Fprintf(w, "  Service connection string:\n    %s\n", h.ServiceConnectionString(""))
	if cs := h.EventHubConnectionString(); cs != "" {
		fmt.Fprintf(w, "  Event Hub-compatible connection string (%d partitions):\n    %s\n", h.EventHub.PartitionCount(), cs)
	}
	if cs := h.EventHubDevelopmentConnectionString(); cs != "" {
		fmt.Fprintf(w, "  Event Hub-compatible development connection string:\n    %s\n", cs)
	}
	fmt.Fprintf(w, "  Device Provisioning Service: ID scope %s, global endpoint %s\n", h.DPSIDScope(), h.Hostname())
	fmt.Fprintf(w, "  Provisioning service connection string:\n    %s\n", h.DPSServiceConnectionString())
	if len(h.Seeded) > 0 {
		created := 0
		for _, s := range h.Seeded {
			if s.Created {
				created++
			}
		}
		fmt.Fprintf(w, "  Seeded identities (%d, %d new):\n", len(h.Seeded), created)
		for i, s := range h.Seeded {
			if i == bannerSeedLines {
				fmt.Fprintf(w, "    ... and %d more\n", len(h.Seeded)-i)
				break
			}
			cs, err := h.DeviceConnectionString(ctx, s.DeviceID, s.ModuleID)
			if err != nil {
				cs = "(" + err.Error() + ")"
			}
			fmt.Fprintf(w, "    %s\n", cs)
		}
	}
	for _, warn := range h.Warnings {
		fmt.Fprintf(w, "  WARNING: %s\n", warn)
	}
}
