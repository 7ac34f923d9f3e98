package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/connectortest"
	"github.com/jml-dev/jml/internal/testsvc"
)

// dsn is the MariaDB the tests use: JML_TEST_MYSQL or the machine's root
// account on 127.0.0.1:3306. Users the tests make start with jmltest_.
func dsn() string {
	if d := os.Getenv("JML_TEST_MYSQL"); d != "" {
		return d
	}
	return "root@tcp(127.0.0.1:3306)/"
}

var admin *sql.DB

func TestMain(m *testing.M) {
	// The driver logs the connections the tests kill on purpose.
	driver.SetLogger(log.New(io.Discard, "", 0))
	db, err := sql.Open("mysql", dsn())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "connector/mysql tests need MariaDB or MySQL at %s (set JML_TEST_MYSQL): %v\n", dsn(), err)
		os.Exit(1)
	}
	admin = db
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS jmltest_app",
		"CREATE TABLE IF NOT EXISTS jmltest_app.orders (id INT)",
		"CREATE ROLE IF NOT EXISTS jmltest_reader",
		"GRANT SELECT ON jmltest_app.* TO jmltest_reader",
		"CREATE USER IF NOT EXISTS jmltest_victim@'%'",
	} {
		if _, err := db.Exec(q); err != nil {
			fmt.Fprintln(os.Stderr, q, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	for _, q := range []string{"DROP DATABASE IF EXISTS jmltest_app", "DROP ROLE IF EXISTS jmltest_reader", "DROP USER IF EXISTS jmltest_victim@'%'"} {
		db.Exec(q)
	}
	db.Close()
	os.Exit(code)
}

var testTargets = map[string]map[string]any{
	"app-reader":   {"role": "jmltest_reader"},
	"orders-write": {"database": "jmltest_app", "table": "orders", "privileges": []any{"SELECT", "INSERT"}},
	"app-read":     {"database": "jmltest_app", "privileges": []any{"SELECT"}},
}

func open(t testing.TB) *Conn {
	t.Helper()
	c, err := Open(context.Background(), connector.Config{System: "maria", Type: Type,
		Settings: map[string]any{"dsn": "env:DSN"}, Targets: testTargets,
		Getenv: func(k string) string {
			if k == "DSN" {
				return dsn()
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.(*Conn).Close() })
	return c.(*Conn)
}

type session struct {
	db *sql.DB
	c  *sql.Conn
}

func (s session) Check(ctx context.Context) error {
	var one int
	return s.c.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func (s session) Close() {
	s.c.Close()
	s.db.Close()
}

// login opens one pinned connection as the account.
func login(ctx context.Context, name, secret string) (connectortest.Session, error) {
	base, err := driver.ParseDSN(dsn())
	if err != nil {
		return nil, err
	}
	cfg := driver.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = base.Net, base.Addr, name, secret
	cfg.Timeout = 5 * time.Second
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	c, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := session{db, c}
	if err := s.Check(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func TestConformance(t *testing.T) {
	c := open(t)
	connectortest.Run(t, connectortest.Harness{
		Conn:         c,
		Entitlements: [2]string{"app-reader", "orders-write"},
		Prefix:       "jmltest_",
		Login:        login,
		CreateForeign: func(ctx context.Context, name string) error {
			acct := quote(name) + "@'%'"
			for _, q := range []string{"CREATE USER " + acct + " IDENTIFIED BY 'foreign-pw'", "GRANT jmltest_reader TO " + acct} {
				if _, err := admin.ExecContext(ctx, q); err != nil {
					return err
				}
			}
			return nil
		},
	})
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'jmltest_victim'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("jmltest_victim is gone (%v): a hostile name was executed", err)
	}
}

func TestPrivilegesWork(t *testing.T) {
	c := open(t)
	ctx := context.Background()
	a := connector.Account{Name: "jmltest_priv"}
	t.Cleanup(func() { c.DeleteAccount(ctx, connector.Op{}, a) })
	for _, f := range []func() error{
		func() error { return c.EnsureAccount(ctx, connector.Op{}, a) },
		func() error { return c.Grant(ctx, connector.Op{}, a, "orders-write") },
		func() error { return c.SetCredential(ctx, connector.Op{}, a, connector.Credential{Secret: "pw-priv"}) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := login(ctx, a.Name, "pw-priv")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn := s.(session).c
	if _, err := conn.ExecContext(ctx, "INSERT INTO jmltest_app.orders VALUES (1)"); err != nil {
		t.Fatalf("INSERT with orders-write: %v", err)
	}
	if err := c.Revoke(ctx, connector.Op{}, a, "orders-write"); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, connector.Op{}, a, "orders-write"); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO jmltest_app.orders VALUES (2)"); err == nil {
		t.Fatal("INSERT after revoking orders-write succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		settings map[string]any
		targets  map[string]map[string]any
		want     string
	}{
		{map[string]any{"dsn": "root:pw@tcp(h)/"}, nil, "must be a reference"},
		{map[string]any{"dsn": "env:D"}, map[string]map[string]any{"e": {"database": "d", "privileges": []any{"SUPER"}}}, `"SUPER" is not one of`},
		{map[string]any{"dsn": "env:D"}, map[string]map[string]any{"e": {"database": "d", "table": "t", "privileges": []any{"EXECUTE"}}}, "cannot be granted on a table"},
		{map[string]any{"dsn": "env:D"}, map[string]map[string]any{"e": {"privileges": []any{"SELECT"}}}, "needs role, or database"},
		{map[string]any{"dsn": "env:D", "hots": "%"}, nil, "hots"},
	} {
		_, err := Open(context.Background(), connector.Config{System: "maria", Type: Type, Settings: tc.settings, Targets: tc.targets, CheckOnly: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%v, %v) = %v, want error containing %q", tc.settings, tc.targets, err, tc.want)
		}
	}
}

// TestTLSRequired: with tls.caFile set the connector talks TLS or not at
// all. The machine's MariaDB serves no TLS, so every call must fail
// instead of falling back to plaintext; a CA file that is not PEM is a
// config error naming the setting.
func TestTLSRequired(t *testing.T) {
	dir := t.TempDir()
	files, err := testsvc.WriteTLSFiles(dir, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "DSN" {
			return dsn()
		}
		return ""
	}
	c, err := Open(context.Background(), connector.Config{System: "maria", Type: Type,
		Settings: map[string]any{"dsn": "env:DSN", "tls": map[string]any{"caFile": files.CA}}, Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	defer c.(*Conn).Close()
	if _, err := c.(*Conn).ListAccounts(context.Background()); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("ListAccounts over a server without TLS = %v, want a TLS error", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), connector.Config{System: "maria", Type: Type,
		Settings: map[string]any{"dsn": "env:DSN", "tls": map[string]any{"caFile": bad}}, Getenv: getenv})
	if err == nil || !strings.Contains(err.Error(), "tls.caFile: no certificate") {
		t.Fatalf("Open with a non-PEM CA = %v, want tls.caFile error", err)
	}
}
