package hub

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The hub has one clock (clock.Clock, fake under --fake-clock and in
// hubtest.WithClock): a domain package that reads the wall clock instead
// makes the hub disagree with itself once a test moves the clock. A wall-
// clock read in a domain package must say why, in a "wall clock:" comment
// on its line or the line above, or be listed here with the reason (for
// files where a comment would be noise).
var wallClockAllowed = map[string]string{
	"jobs/runner.go:progress.done":            "paces progress log lines for the operator",
	"messaging/telemetry.go:Telemetry.commit": "measures how long a commit takes (a machine figure)",
	"sasauth/auth.go:Authenticator.now":       "the default when no clock is given; the hub passes its own",
	"methods/methods.go:Invoker.after":        "the default when no clock is given; the hub passes its own",
}

// wallClockFuncs are the functions of package time that read or wait on
// the wall clock.
var wallClockFuncs = []string{"Now", "Since", "Until", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick", "Sleep"}

// wallClockReads reports calls of wallClockFuncs in one file of a domain
// package that neither carry a "wall clock:" comment nor are allowed. A
// reference that is not a call (cfg.Now = time.Now) is a Config default,
// which the hub overrides with its clock.
func wallClockReads(pkg, name string, src []byte, allowed map[string]string) []string {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return []string{pkg + "/" + name + ": " + err.Error()}
	}
	timeNames := map[string]bool{}
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
			if imp.Name != nil {
				timeNames[imp.Name.Name] = true
			} else {
				timeNames["time"] = true
			}
		}
	}
	if len(timeNames) == 0 {
		return nil
	}
	explained := map[int]bool{} // lines a "wall clock:" comment covers
	for _, cg := range f.Comments {
		if strings.Contains(cg.Text(), "wall clock:") {
			end := fset.Position(cg.End()).Line
			explained[end], explained[end+1] = true, true
		}
	}
	var out []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		where := ""
		if ok {
			where = fn.Name.Name
			if fn.Recv != nil && len(fn.Recv.List) == 1 {
				t := fn.Recv.List[0].Type
				if s, ok := t.(*ast.StarExpr); ok {
					t = s.X
				}
				if id, ok := t.(*ast.Ident); ok {
					where = id.Name + "." + where
				}
			}
		}
		ast.Inspect(d, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, ok := sel.X.(*ast.Ident)
			if !ok || !timeNames[x.Name] || !slices.Contains(wallClockFuncs, sel.Sel.Name) {
				return true
			}
			line := fset.Position(sel.Pos()).Line
			if explained[line] || allowed[pkg+"/"+name+":"+where] != "" {
				return true
			}
			out = append(out, fmt.Sprintf("%s/%s:%d: time.%s in a domain package reads the wall clock: use the hub's clock, or say why not in a \"wall clock:\" comment",
				pkg, name, line, sel.Sel.Name))
			return true
		})
	}
	return out
}

// Domain packages read the hub's clock, not the wall clock.
func TestArchitecture_OneClock(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		if layers[rel] != domain || rel == "clock" {
			continue
		}
		for _, f := range p.GoFiles {
			b, err := readFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range wallClockReads(rel, f, b, wallClockAllowed) {
				t.Error(v)
			}
		}
	}
}

// The check finds planted wall-clock reads and lets explained ones pass.
func TestArchitecture_OneClockPlanted(t *testing.T) {
	src := `package twins

import (
	"time"
	tm "time"
)

func expiry() time.Time { return time.Now().Add(time.Hour) }

func wait() { <-tm.After(time.Second) }

func retry() {
	// wall clock: a retry of I/O, not the hub's time
	<-time.After(time.Second)
	_ = time.Since(time.Time{}) // wall clock: a measurement
}

type store struct{}

func (s *store) tick() { time.Sleep(time.Millisecond) }

var now = time.Now // a default: not a call

var started = time.Now()
`
	got := wallClockReads("twins", "x.go", []byte(src), map[string]string{"twins/x.go:store.tick": "a test"})
	want := []string{
		`twins/x.go:8: time.Now in a domain package reads the wall clock: use the hub's clock, or say why not in a "wall clock:" comment`,
		`twins/x.go:10: time.After in a domain package reads the wall clock: use the hub's clock, or say why not in a "wall clock:" comment`,
		`twins/x.go:24: time.Now in a domain package reads the wall clock: use the hub's clock, or say why not in a "wall clock:" comment`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
