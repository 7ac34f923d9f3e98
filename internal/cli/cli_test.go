package cli

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"jml": func() { os.Exit(Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)) },
	})
}

// TestScripts runs the CLI end to end from testdata/script/*.txtar.
// Each script has the quickstart policy as $POLICY and a fixed master key.
func TestScripts(t *testing.T) {
	policy, err := filepath.Abs("../../examples/quickstart/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("POLICY", policy)
			e.Setenv("JML_MASTER_KEY", strings.Repeat("ab", 32))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// sqlexec FILE SQL: change an SQLite database behind jml's back,
			// as an attacker with database access would.
			"sqlexec": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: sqlexec FILE SQL")
				}
				db, err := sql.Open("sqlite", ts.MkAbs(args[0]))
				if err != nil {
					ts.Fatalf("%v", err)
				}
				defer db.Close()
				res, err := db.Exec(args[1])
				if err == nil {
					if n, _ := res.RowsAffected(); n == 0 {
						err = os.ErrNotExist
					}
				}
				if (err != nil) != neg {
					ts.Fatalf("sqlexec %q: %v", args[1], err)
				}
			},
		},
	})
}
