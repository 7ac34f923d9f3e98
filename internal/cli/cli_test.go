package cli

import (
	"context"
	"database/sql"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/jml-dev/jml/internal/poll"
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

// TestServeBindsFirst: with its port taken, jml serve fails naming the
// address before it creates a store, a key or a worker.
func TestServeBindsFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	pol, _ := filepath.Abs("../../examples/quickstart/policy.yaml")
	cfg := filepath.Join(dir, "jml.yaml")
	os.WriteFile(cfg, []byte("policy: "+pol+"\ndb: sqlite:"+filepath.Join(dir, "jml.db")+"\nmasterKeyFile: "+filepath.Join(dir, "jml.key")+"\n"), 0o600)
	var stderr strings.Builder
	code := Main(context.Background(), []string{"serve", "--config", cfg, "--addr", ln.Addr().String()}, strings.NewReader(""), io.Discard, &stderr, func(string) string { return "" })
	if code == 0 || !strings.Contains(stderr.String(), "listen on "+ln.Addr().String()) {
		t.Fatalf("serve on a taken port: exit %d, %s", code, stderr.String())
	}
	for _, f := range []string{"jml.db", "jml.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s was created before the port was bound", f)
		}
	}
}

// TestFirstStartSaysHowToGetIn: a first start with no API token logs the
// command that makes the first one, and prints no token itself.
func TestFirstStartSaysHowToGetIn(t *testing.T) {
	dir := t.TempDir()
	pol, _ := filepath.Abs("../../examples/quickstart/policy.yaml")
	cfg := filepath.Join(dir, "jml.yaml")
	os.WriteFile(cfg, []byte("policy: "+pol+"\ndb: sqlite:"+filepath.Join(dir, "jml.db")+"\nmasterKeyFile: "+filepath.Join(dir, "jml.key")+"\n"), 0o600)
	var stderr syncWriter
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--config", cfg, "--addr", "127.0.0.1:0"}, strings.NewReader(""), io.Discard, &stderr, func(string) string { return "" })
	}()
	want := "create the first admin token with `jml token create --role admin --config " + cfg + "`"
	poll.Until(t, 20*time.Second, 20*time.Millisecond, func() (bool, string) {
		return strings.Contains(stderr.String(), want), "serve said: " + stderr.String()
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "jmlt_") {
		t.Fatalf("serve printed a token: %s", stderr.String())
	}
}

// syncWriter is a buffer the server's goroutines may write to.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
