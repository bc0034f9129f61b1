package hub

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/iothub-emulator/iothub-emulator/"

// layer is what a package is in the README's layout, and so what it may
// depend on.
type layer int

const (
	// domain packages hold the hub's rules and know nothing of HTTP, MQTT,
	// AMQP or SQL.
	domain layer = iota + 1
	// storage implements the domain's store interfaces (SQLite, Azurite's
	// blob API); it knows no transport of the hub's.
	storage
	// transport packages speak one protocol to clients and call the domain;
	// they know no storage and no other transport.
	transport
	// protocol libraries (like mochi for MQTT) know nothing of the hub.
	protocol
	// wiring packages (the hub, its command, tests) may use everything.
	wiring
	// clients talk to a running emulator over its protocols, as devices
	// and back ends do; they use hub topics, and no storage.
	client
)

// layers classifies every package of the module; a package missing here
// fails the test, so a new package is placed on purpose.
var layers = map[string]layer{
	"iothub": domain, "sasauth": domain, "registry": domain, "twins": domain, "twins/memstore": domain,
	"methods": domain, "jobs": domain, "query": domain, "messaging": domain, "sessions": domain, "wire": domain,
	"groupcommit": domain, "provisioning": domain, "provisioning/storetest": domain, "configurations": domain, "fileupload": domain, "digitaltwins": domain,
	"changefeed": domain, "eventhub": domain, "clock": domain, "faults": domain, "throttling": domain,
	"twins/twinstest": domain, "messaging/memstore": domain, "messaging/messagingtest": domain,
	"sqlite": storage, "blobstorage": storage,
	"broker": transport, "httpapi": transport, "amqphub": transport, "ui": transport,
	"amqp": protocol,
	"hub":  wiring, "hubtest": wiring, "e2e": wiring, "cmd/iothub-emulator": wiring,
	"cmd/soak": client, "cmd/loadgen": client, "simdevices": client,
}

var (
	sqlDeps       = []string{"database/sql", "modernc.org/", module + "sqlite"}
	transportDeps = []string{"net/http", "github.com/mochi-mqtt/", "github.com/gorilla/", module + "broker", module + "httpapi",
		module + "amqphub", module + "amqp"}
	wiringDeps = []string{module + "hub", module + "hubtest"}
)

// forbidden lists the dependency prefixes a package of the layer must not
// have (directly or not).
func forbidden(l layer, self string) []string {
	var out []string
	switch l {
	case domain:
		out = slices.Concat(sqlDeps, transportDeps, wiringDeps)
	case storage:
		out = slices.Concat(transportDeps[1:], wiringDeps) // net/http is how blob storage is reached
	case transport:
		out = slices.Concat(sqlDeps, wiringDeps)
		for _, t := range []string{"broker", "httpapi", "amqphub"} {
			if t != self {
				out = append(out, module+t)
			}
		}
	case protocol:
		out = []string{module}
	case client:
		out = slices.Concat(sqlDeps, wiringDeps)
	}
	return out
}

// pkgInfo is what `go list -json` says of a package.
type pkgInfo struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Deps       []string
}

// archViolations checks packages against the layers: dependencies, and hub
// topics ("$iothub/...") as string literals outside the MQTT transport.
// src reads a file's source.
func archViolations(pkgs []pkgInfo, src func(path string) ([]byte, error)) []string {
	var out []string
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, module)
		l, ok := layers[rel]
		if !ok {
			out = append(out, rel+": not classified in hub/arch_test.go")
			continue
		}
		for _, dep := range p.Deps {
			for _, f := range forbidden(l, rel) {
				// database/sql/driver arrives through github.com/google/uuid's Valuer.
				if strings.HasPrefix(dep, f) && dep != "database/sql/driver" && dep != p.ImportPath {
					out = append(out, rel+" depends on "+dep)
				}
			}
		}
		if rel == "broker" || l == client {
			continue
		}
		for _, f := range p.GoFiles {
			b, err := src(filepath.Join(p.Dir, f))
			if err != nil {
				out = append(out, err.Error())
				continue
			}
			out = append(out, topicLiterals(rel, f, b)...)
		}
	}
	return out
}

// topicLiterals reports string literals that hold an MQTT hub topic, or a
// Device Provisioning Service one ("$dps/..."). The HTTPS path of MQTT over
// WebSockets is an HTTP route, not a topic.
func topicLiterals(pkg, name string, src []byte) []string {
	f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.SkipObjectResolution)
	if err != nil {
		return []string{pkg + "/" + name + ": " + err.Error()}
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		if strings.Contains(strings.ReplaceAll(s, "/$iothub/websocket", ""), "$iothub/") || strings.Contains(s, "$dps/") {
			out = append(out, pkg+"/"+name+": hub topic "+lit.Value+" outside the MQTT transport")
		}
		return true
	})
	return out
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkgInfo
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.ImportPath, module) && !strings.Contains(p.ImportPath, "/e2e/sdk/") && !strings.Contains(p.ImportPath, "/examples/") {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// Every package keeps to its layer (README, "Package layout").
func TestArchitecture(t *testing.T) {
	for _, v := range archViolations(listPackages(t), readFile) {
		t.Error(v)
	}
}

// The check itself finds planted violations of each kind.
func TestArchitecture_PlantedViolations(t *testing.T) {
	files := map[string]string{
		"/m/sqlite/topic.go":  "package sqlite\nconst t = \"$iothub/twin/res/200\"\nconst d = \"$dps/registrations/res/#\"\n",
		"/m/httpapi/ws.go":    "package httpapi\nconst p = \"/$iothub/websocket\"\n// $iothub/methods/POST/ in a comment is fine\n",
		"/m/broker/topics.go": "package broker\nconst t = \"$iothub/methods/POST/\"\n",
	}
	src := func(p string) ([]byte, error) { return []byte(files[p]), nil }
	pkgs := []pkgInfo{
		{ImportPath: module + "twins", Deps: []string{"context", module + "broker"}},
		{ImportPath: module + "messaging", Deps: []string{"modernc.org/sqlite"}},
		{ImportPath: module + "sqlite", Dir: "/m/sqlite", GoFiles: []string{"topic.go"}, Deps: []string{module + "broker"}},
		{ImportPath: module + "broker", Dir: "/m/broker", GoFiles: []string{"topics.go"}, Deps: []string{module + "sqlite", module + "twins"}},
		{ImportPath: module + "httpapi", Dir: "/m/httpapi", GoFiles: []string{"ws.go"}, Deps: []string{module + "broker", "net/http"}},
		{ImportPath: module + "amqp", Deps: []string{module + "iothub"}},
		{ImportPath: module + "newthing"},
	}
	got := archViolations(pkgs, src)
	want := []string{
		"twins depends on " + module + "broker",
		"messaging depends on modernc.org/sqlite",
		"sqlite depends on " + module + "broker",
		`sqlite/topic.go: hub topic "$iothub/twin/res/200" outside the MQTT transport`,
		`sqlite/topic.go: hub topic "$dps/registrations/res/#" outside the MQTT transport`,
		"broker depends on " + module + "sqlite",
		"httpapi depends on " + module + "broker",
		"amqp depends on " + module + "iothub",
		"newthing: not classified in hub/arch_test.go",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
