package postgres

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/connectortest"
	"github.com/jml-dev/jml/internal/testsvc"
)

// server is a private PostgreSQL that checks passwords (the machine's
// shared one trusts local logins, so a rotation test would prove nothing).
var server *testsvc.Server

func TestMain(m *testing.M) {
	s, err := testsvc.StartPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, "connector/postgres tests need a private PostgreSQL server:", err)
		os.Exit(1)
	}
	server = s
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

func admin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, server.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec(t testing.TB, c *pgx.Conn, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := c.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

var testTargets = map[string]map[string]any{
	"db-read":      {"role": "app_read"},
	"orders-write": {"table": "app.orders", "privileges": []any{"SELECT", "INSERT"}},
	"app-usage":    {"schema": "app", "privileges": []any{"USAGE"}},
}

func open(t testing.TB) *Conn {
	t.Helper()
	c, err := Open(context.Background(), connector.Config{System: "appdb", Type: Type,
		Settings: map[string]any{"url": "env:APPDB_URL"}, Targets: testTargets,
		Getenv: func(k string) string {
			if k == "APPDB_URL" {
				return server.URL
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.(*Conn).Close() })
	return c.(*Conn)
}

type session struct{ c *pgx.Conn }

func (s session) Check(ctx context.Context) error { return s.c.Ping(ctx) }
func (s session) Close()                          { s.c.Close(context.Background()) }

func login(ctx context.Context, name, secret string) (connectortest.Session, error) {
	cfg, err := pgx.ParseConfig(server.URL)
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = name, secret
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return session{c}, nil
}

func TestConformance(t *testing.T) {
	a := admin(t)
	exec(t, a, "DROP SCHEMA IF EXISTS app CASCADE", "DROP ROLE IF EXISTS app_read", "DROP ROLE IF EXISTS victim",
		"CREATE ROLE app_read NOLOGIN", "CREATE ROLE victim LOGIN", "CREATE SCHEMA app", "CREATE TABLE app.orders (id int)")
	c := open(t)
	connectortest.Run(t, connectortest.Harness{
		Conn:         c,
		Entitlements: [2]string{"db-read", "orders-write"},
		Prefix:       "ct_",
		Login:        login,
		CreateForeign: func(ctx context.Context, name string) error {
			_, err := a.Exec(ctx, "CREATE ROLE "+ident(name)+" LOGIN IN ROLE app_read")
			return err
		},
	})
	var victim bool
	if err := a.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'victim')").Scan(&victim); err != nil || !victim {
		t.Fatalf("role victim is gone (%v): a hostile name was executed", err)
	}
}

func TestRefusesRolesJMLMustNotManage(t *testing.T) {
	a := admin(t)
	exec(t, a, "DROP ROLE IF EXISTS boss", "CREATE ROLE boss SUPERUSER LOGIN", "DROP ROLE IF EXISTS app_read", "CREATE ROLE app_read NOLOGIN")
	t.Cleanup(func() { exec(t, a, "DROP ROLE IF EXISTS boss") })
	c := open(t)
	ctx := context.Background()
	op := connector.Op{IdempotencyKey: "k"}
	for _, name := range []string{"boss", testsvc.PostgresAdmin, "app_read"} {
		if err := c.DisableAccount(ctx, op, connector.Account{Name: name}); err == nil {
			t.Errorf("DisableAccount(%q) succeeded", name)
		}
		if err := c.EnsureAccount(ctx, op, connector.Account{Name: name}); err == nil {
			t.Errorf("EnsureAccount(%q) succeeded", name)
		}
	}
	var login bool
	if err := a.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'boss'").Scan(&login); err != nil || !login {
		t.Fatalf("superuser boss lost LOGIN (%v)", err)
	}
}

func TestPasswordValidUntil(t *testing.T) {
	a := admin(t)
	exec(t, a, "DROP ROLE IF EXISTS app_read", "CREATE ROLE app_read NOLOGIN")
	c := open(t)
	ctx := context.Background()
	acct := connector.Account{Name: "vu_user"}
	t.Cleanup(func() { c.DeleteAccount(ctx, connector.Op{}, acct) })
	if err := c.EnsureAccount(ctx, connector.Op{}, acct); err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2031, 5, 4, 3, 2, 1, 0, time.UTC)
	if err := c.SetCredential(ctx, connector.Op{}, acct, connector.Credential{ID: "c", Secret: "s3cret-s3cret", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	var until time.Time
	var verifier string
	if err := a.QueryRow(ctx, "SELECT rolvaliduntil, rolpassword FROM pg_authid WHERE rolname = 'vu_user'").Scan(&until, &verifier); err != nil {
		t.Fatal(err)
	}
	if !until.Equal(exp) {
		t.Errorf("VALID UNTIL = %v, want %v", until, exp)
	}
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$4096:") || strings.Contains(verifier, "s3cret") {
		t.Errorf("stored password %q is not a SCRAM verifier", verifier)
	}
	// An expired password no longer logs in.
	if err := c.SetCredential(ctx, connector.Op{}, acct, connector.Credential{ID: "c2", Secret: "old-s3cret", ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if s, err := login(ctx, "vu_user", "old-s3cret"); err == nil {
		s.Close()
		t.Fatal("login with an expired password succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		settings map[string]any
		targets  map[string]map[string]any
		want     string
	}{
		{map[string]any{"url": "postgres://u:p@h/db"}, nil, "must be a reference"},
		{map[string]any{}, nil, "url is required"},
		{map[string]any{"url": "env:X", "bogus": 1}, nil, `system "db" (type postgres): config: unknown key "bogus" (allowed: url`},
		{map[string]any{"url": "env:X"}, map[string]map[string]any{"e": {"rol": "r"}}, `entitlement "e": target: unknown key "rol" (allowed: role, schema, table, privileges; did you mean role?)`},
		{map[string]any{"url": "env:X"}, map[string]map[string]any{"e": {"role": "pg_monitor"}}, "reserved"},
		{map[string]any{"url": "env:X"}, map[string]map[string]any{"e": {"table": "t", "privileges": []any{"DROP"}}}, `"DROP" is not one of`},
		{map[string]any{"url": "env:X"}, map[string]map[string]any{"e": {}}, "needs role"},
		{map[string]any{"url": "env:X"}, map[string]map[string]any{"e": {"role": strings.Repeat("r", 64)}}, "at most 63"},
	} {
		_, err := Open(context.Background(), connector.Config{System: "db", Type: Type, Settings: tc.settings, Targets: tc.targets, CheckOnly: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%v, %v) = %v, want error containing %q", tc.settings, tc.targets, err, tc.want)
		}
	}
	_, err := Open(context.Background(), connector.Config{System: "db", Type: Type, Settings: map[string]any{"url": "env:NOPE"}, Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "NOPE is not set") {
		t.Errorf("unset variable: %v", err)
	}
}

// TestTLS: the connector reaches a server over TLS, verifying it against
// the CA the URL names, and refuses a server its CA did not sign.
func TestTLS(t *testing.T) {
	srv, err := testsvc.StartPostgres(true)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	open := func(ca string) (*Conn, error) {
		url := fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=verify-full&sslrootcert=%s", testsvc.PostgresAdmin, srv.Password, srv.Addr, ca)
		c, err := Open(context.Background(), connector.Config{System: "tls", Type: Type, Settings: map[string]any{"url": "env:U"},
			Getenv: func(string) string { return url }})
		if err != nil {
			return nil, err
		}
		return c.(*Conn), nil
	}
	c, err := open(srv.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.EnsureAccount(ctx, connector.Op{}, connector.Account{Name: "tls_user"}); err != nil {
		t.Fatalf("EnsureAccount over TLS: %v", err)
	}
	var ssl bool
	if err := c.pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("the connector's session is not TLS (%v, %v)", ssl, err)
	}
	other, err := testsvc.WriteTLSFiles(t.TempDir(), os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	bad, err := open(other.CA)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.EnsureAccount(ctx, connector.Op{}, connector.Account{Name: "tls_user2"}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server signed by another CA was accepted: %v", err)
	}
}
