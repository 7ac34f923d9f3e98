package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/jml-dev/jml/"

// TestPackageTable holds ARCHITECTURE.md's package table to the code: every
// package of the module has a row, imports only what its row lists, and
// each listed import is used by a package of the row. A new package or a
// new dependency therefore changes the table in the same commit.
func TestPackageTable(t *testing.T) {
	t.Parallel()
	rows := readPackageTable(t, "../../ARCHITECTURE.md")
	imports := goListImports(t)

	used := map[*packageRow]map[string]bool{}
	for pkg, deps := range imports {
		row, ok := rows[pkg]
		if !ok {
			t.Errorf("package %s has no row in ARCHITECTURE.md's package table", pkg)
			continue
		}
		if used[row] == nil {
			used[row] = map[string]bool{}
		}
		for _, d := range deps {
			if !slices.Contains(row.imports, d) {
				t.Errorf("%s imports %s, which its row in ARCHITECTURE.md does not list (it lists %v)", pkg, d, row.imports)
			}
			used[row][d] = true
		}
	}
	seen := map[*packageRow]bool{}
	for pkg, row := range rows {
		if _, ok := imports[pkg]; !ok {
			t.Errorf("ARCHITECTURE.md lists package %s, which does not exist", pkg)
			continue
		}
		if seen[row] {
			continue
		}
		seen[row] = true
		for _, d := range row.imports {
			if !used[row][d] {
				t.Errorf("ARCHITECTURE.md says %v import %s, but none does", row.packages, d)
			}
		}
	}
}

type packageRow struct {
	packages []string
	imports  []string
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readPackageTable returns the table's rows by package, with package paths
// as the table writes them: relative to internal/, or cmd/jml.
func readPackageTable(t *testing.T, path string) map[string]*packageRow {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]*packageRow{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "## Packages":
			in = true
			continue
		case !in:
			continue
		case strings.HasPrefix(line, "## "):
			in = false
			continue
		case !strings.HasPrefix(line, "| `"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 3 {
			t.Fatalf("ARCHITECTURE.md: package table row has %d cells, want 3: %s", len(cells), line)
		}
		row := &packageRow{packages: names(cells[0])}
		if imp := strings.TrimSpace(cells[2]); imp != "—" {
			row.imports = names(imp)
			if len(row.imports) == 0 {
				t.Fatalf("ARCHITECTURE.md: the imports of %v are neither — nor a list of `packages`: %q", row.packages, imp)
			}
		}
		for _, p := range row.packages {
			if _, dup := rows[p]; dup {
				t.Errorf("ARCHITECTURE.md lists package %s twice", p)
			}
			rows[p] = row
		}
	}
	if len(rows) == 0 {
		t.Fatal("ARCHITECTURE.md has no package table under ## Packages")
	}
	return rows
}

func names(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// goListImports returns each package of the module with the module's
// packages its non-test files import, in the table's spelling.
func goListImports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	short := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "internal/") }
	pkgs := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		var deps []string
		for _, d := range p.Imports {
			if strings.HasPrefix(d, module) {
				deps = append(deps, short(d))
			}
		}
		pkgs[short(p.ImportPath)] = deps
	}
	return pkgs
}
