// Command loadgen drives the emulator to the hub's scale limits and reports
// what it took. It is not a test: run it by hand and record what it prints
// in docs/benchmarks.md ("Scale: a million identities and many
// connections").
//
//	go run ./cmd/loadgen registry -devices 1000000   # bulk import, queries, restart time
//	go run ./cmd/loadgen connect -devices 19000      # idle MQTT devices: connect rate, memory
//
// Each mode builds the emulator (or runs -emulator), starts it on free
// loopback ports with its database on disk, and talks to it over plain
// HTTP and MQTT (TLS with -tls) as a client on another machine would.
// Both raise their open-file soft limit to the hard limit first, as the
// emulator does.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// deviceKey is every generated device's key, so tokens are signed locally.
const deviceKey = "bG9hZGdlbi1kZXZpY2Uta2V5LTAxMjM0NTY3ODlhYmNkZWY="

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	limit := raiseOpenFileLimit()
	var err error
	switch os.Args[1] {
	case "registry":
		err = runRegistry(ctx, os.Args[2:])
	case "connect":
		err = runConnect(ctx, os.Args[2:], limit)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen registry|connect [flags]  (loadgen MODE -h lists the flags)")
	os.Exit(2)
}

// raiseOpenFileLimit sets the soft open-file limit to the hard limit and
// returns it: every connection is a file descriptor.
func raiseOpenFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

// emulator is the process under load.
type emulator struct {
	bin, dataDir string
	args         []string
	cmd          *exec.Cmd
	log          *os.File
	httpBase     string
	mqttAddr     string
	token        string // iothubowner SAS
	client       *http.Client
}

// emulatorFlags are the flags every mode shares.
type emulatorFlags struct {
	bin, dataDir string
	tls          bool
}

func (f *emulatorFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.bin, "emulator", "", "emulator binary (default: go build ./cmd/iothub-emulator, run from the repository root)")
	fs.StringVar(&f.dataDir, "data-dir", "", "the emulator's data directory (default: a temporary one, removed at the end); kept when given, so a later run can reuse it")
}

// newEmulator builds the binary if needed and picks ports; start runs it.
func newEmulator(ctx context.Context, f emulatorFlags, tmp string) (*emulator, error) {
	bin := f.bin
	if bin == "" {
		bin = filepath.Join(tmp, "iothub-emulator")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/iothub-emulator")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build the emulator (run from the repository root): %w", err)
		}
	}
	dataDir := f.dataDir
	if dataDir == "" {
		dataDir = filepath.Join(tmp, "data")
	}
	ports := make([]int, 3)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	e := &emulator{bin: bin, dataDir: dataDir,
		httpBase: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		mqttAddr: "127.0.0.1:" + strconv.Itoa(ports[1]),
		client:   &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	e.args = []string{"--data-dir", dataDir, "--http-port", strconv.Itoa(ports[0]), "--https-port", "0",
		"--amqps-port", "0", "--amqp-port", "0", "--log-level", "warn"}
	if f.tls {
		e.args = append(e.args, "--mqtt-port", "0", "--mqtts-port", strconv.Itoa(ports[1]))
	} else {
		e.args = append(e.args, "--mqtt-port", strconv.Itoa(ports[1]), "--mqtts-port", "0")
	}
	e.token, _ = sasauth.Sign("localhost", sasauth.DefaultOwnerKey, "iothubowner", time.Now().Add(48*time.Hour))
	return e, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the emulator and returns how long it took from exec until
// its health endpoint answered.
func (e *emulator) start() (time.Duration, error) {
	if err := os.MkdirAll(e.dataDir, 0o755); err != nil {
		return 0, err
	}
	var err error
	if e.log, err = os.OpenFile(filepath.Join(filepath.Dir(e.dataDir), "emulator.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return 0, err
	}
	e.cmd = exec.Command(e.bin, e.args...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	begin := time.Now()
	if err := e.cmd.Start(); err != nil {
		return 0, err
	}
	probe := &http.Client{Timeout: time.Second}
	for time.Since(begin) < 2*time.Minute {
		if resp, err := probe.Get(e.httpBase + "/_emulator/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(begin), nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.kill()
	return 0, errors.New("the emulator did not become healthy; see " + e.log.Name())
}

// stop ends the emulator with SIGTERM (a clean shutdown) and waits.
func (e *emulator) stop() error {
	if e.cmd == nil {
		return nil
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- e.cmd.Wait() }()
	select {
	case err := <-done:
		e.cmd = nil
		e.log.Close()
		return err
	case <-time.After(time.Minute):
		e.kill()
		return errors.New("the emulator did not stop within a minute of SIGTERM")
	}
}

func (e *emulator) kill() {
	if e.cmd != nil {
		_ = e.cmd.Process.Kill()
		_ = e.cmd.Wait()
		e.cmd = nil
	}
	if e.log != nil {
		e.log.Close()
	}
}

// rssKB is the emulator's resident set size (VmRSS).
func (e *emulator) rssKB() int {
	return procStatusKB(e.cmd.Process.Pid, "VmRSS:")
}

func procStatusKB(pid int, field string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// do sends a REST request as iothubowner.
func (e *emulator) do(ctx context.Context, method, path string, body []byte) (int, []byte, http.Header, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, method, e.httpBase+path+sep+"api-version=2021-04-12", bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// cpuTime is the user and system CPU time a process used so far
// (/proc/PID/stat, in clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it do not.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// dirSize is the bytes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// devID names generated device i.
func devID(i int) string { return fmt.Sprintf("lg%07d", i) }
