package main

import (
	"expvar"
	"sync/atomic"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofEnv names the diagnostic profiling listener. It is an emulator
// developer's tool, not a hub feature: no flag, not in --help, and it must
// name a loopback address. The benchmarks (docs/benchmarks.md) use it to
// profile the emulator process while it is under load:
//
//	IOTHUB_EMULATOR_DEBUG_PPROF=127.0.0.1:6060 iothub-emulator ...
//	go tool pprof 'http://127.0.0.1:6060/debug/pprof/profile?seconds=10'
const pprofEnv = "IOTHUB_EMULATOR_DEBUG_PPROF"

// debugHub is the running hub, for /debug/vars.
var debugHub atomic.Pointer[hub.Hub]

// startPprof serves net/http/pprof on the address in IOTHUB_EMULATOR_DEBUG_PPROF,
// when set, on its own listener (never the hub's API ports), with
// /debug/vars showing the telemetry writer's counters.
func startPprof(log *slog.Logger) {
	addr, ok := os.LookupEnv(pprofEnv)
	if !ok || addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		log.Error(pprofEnv+" must be a loopback host:port; profiling stays off", "value", addr)
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("pprof listener", "error", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	expvar.Publish("telemetry", expvar.Func(func() any {
		if h := debugHub.Load(); h != nil && h.Telemetry != nil {
			return h.Telemetry.Stats()
		}
		return nil
	}))
	log.Warn("diagnostic profiling endpoint enabled (emulator only)", "addr", l.Addr().String())
	go func() { _ = http.Serve(l, mux) }()
}
