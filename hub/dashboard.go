package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/simdevices"
	"github.com/iothub-emulator/iothub-emulator/ui"
)

// newSimulator builds the simulator; it learns where the MQTT listener is
// once it is bound (startSimulations).
func (h *Hub) newSimulator(context.Context) (err error) {
	h.Simulator, err = simdevices.New(simdevices.Deps{Identities: simIdentities{h.Registry}}, simdevices.Config{
		Hostname: h.cfg.Hostname, MaxDevices: h.cfg.MaxSimulatedDevices, Now: h.now, Logger: h.log,
	})
	return err
}

// startSimulations points the simulator at the bound MQTT listener (plain
// when there is one, else TLS with the hub's CA) and starts the seed file's
// simulations.
func (h *Hub) startSimulations(ctx context.Context) error {
	url, tlsCfg := "", (*tls.Config)(nil)
	if addr := h.Addr("mqtt"); addr != "" {
		url = "tcp://" + loopbackFor(addr)
	} else if addr := h.Addr("mqtts"); addr != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(h.caPEM)
		url, tlsCfg = "ssl://"+loopbackFor(addr), &tls.Config{RootCAs: pool, ServerName: h.cfg.Hostname, MinVersion: tls.VersionTLS12}
	}
	h.Simulator.SetBroker(url, tlsCfg)
	for _, spec := range h.seedSimulations {
		if _, err := h.Simulator.Start(ctx, spec, simdevices.OriginSeed); err != nil {
			return fmt.Errorf("--seed: simulation %q: %s", spec.ID, iothub.MessageOf(err))
		}
	}
	return nil
}

// loopbackFor turns a bound address into one to dial: a wildcard bind is
// reached on loopback.
func loopbackFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}

// withDashboard serves the dashboard at /ui/ next to the REST API, and
// redirects / there on the plain HTTP listener (where a browser lands when
// someone types localhost:8080).
func withDashboard(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui", ui.Handler()))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return
		}
		api.ServeHTTP(w, r)
	})
	mux.Handle("/", api)
	return mux
}

// simIdentities gives simulated devices their keys through the registry
// service, creating the devices that are missing with generated keys.
type simIdentities struct{ r *registry.Service }

func (s simIdentities) EnsureDevices(ctx context.Context, ids []string) ([]string, error) {
	var missing []registry.BulkOp
	for _, id := range ids {
		if _, err := s.r.Get(ctx, id, ""); iothub.Is(err, iothub.DeviceNotFound) {
			missing = append(missing, registry.BulkOp{Mode: registry.Create, Identity: &registry.Identity{DeviceID: id}})
		} else if err != nil {
			return nil, err
		}
	}
	for start := 0; start < len(missing); start += seedChunk {
		failed, err := s.r.Import(ctx, missing[start:min(start+seedChunk, len(missing))])
		if err != nil {
			return nil, err
		}
		for _, e := range failed {
			if !iothub.Is(e.Err, iothub.DeviceAlreadyExists) {
				return nil, e.Err
			}
		}
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		d, err := s.r.Get(ctx, id, "")
		if err != nil {
			return nil, err
		}
		if d.Auth.Type != registry.AuthSAS {
			return nil, iothub.Errorf(iothub.InvalidOperation, "simulation: device %q uses X.509 authentication; simulated devices sign SAS tokens.", id)
		}
		keys[i] = d.Auth.PrimaryKey
	}
	return keys, nil
}
