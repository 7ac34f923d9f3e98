package redis

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/connectortest"
	"github.com/jml-dev/jml/internal/testsvc"
)

// addr is the Redis the tests use: JML_TEST_REDIS or the machine's
// 127.0.0.1:6379. Every user the tests make starts with their prefix.
func addr() string {
	if a := os.Getenv("JML_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func TestMain(m *testing.M) {
	c := goredis.NewClient(&goredis.Options{Addr: addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := c.Ping(ctx).Err()
	cancel()
	c.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "connector/redis tests need Redis at %s (set JML_TEST_REDIS): %v\n", addr(), err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var testTargets = map[string]map[string]any{
	"cache-read":  {"rules": []any{"+@read", "~cache:*"}},
	"queue-write": {"rules": []any{"+lpush", "+rpop", "~queue:*", "&events:*"}},
}

func open(t testing.TB) *Conn {
	t.Helper()
	c, err := Open(context.Background(), connector.Config{System: "cache", Type: Type,
		Settings: map[string]any{"addr": addr(), "rotationOverlap": "10m"}, Targets: testTargets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.(*Conn).Close() })
	return c.(*Conn)
}

type session struct{ c *goredis.Client }

// Check sends PING: NOPERM (the user may run only its rule sets) still
// proves the connection is open and authenticated.
func (s session) Check(ctx context.Context) error {
	err := s.c.Ping(ctx).Err()
	if err != nil && strings.HasPrefix(err.Error(), "NOPERM") {
		return nil
	}
	return err
}
func (s session) Close() { s.c.Close() }

// login opens one connection, without retries, so that a connection the
// server closed shows as an error instead of being replaced.
func login(ctx context.Context, name, secret string) (connectortest.Session, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr(), Username: name, Password: secret, PoolSize: 1, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	s := session{c}
	if err := s.Check(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

func TestConformance(t *testing.T) {
	c := open(t)
	admin := goredis.NewClient(&goredis.Options{Addr: addr()})
	defer admin.Close()
	connectortest.Run(t, connectortest.Harness{
		Conn:         c,
		Entitlements: [2]string{"cache-read", "queue-write"},
		Prefix:       "jmltest_",
		Login:        login,
		CreateForeign: func(ctx context.Context, name string) error {
			return admin.Do(ctx, "ACL", "SETUSER", name, "on", ">foreign-pw", "-@all", "resetkeys", "resetchannels", "(+@read ~cache:*)").Err()
		},
	})
}

// TestRevokeKeepsOtherRuleSets: taking one rule set away leaves the others
// working, on the live connection too.
func TestRevokeKeepsOtherRuleSets(t *testing.T) {
	c := open(t)
	ctx := context.Background()
	a := connector.Account{Name: "jmltest_revoke"}
	t.Cleanup(func() { c.DeleteAccount(ctx, connector.Op{}, a) })
	for _, step := range []func() error{
		func() error { return c.EnsureAccount(ctx, connector.Op{}, a) },
		func() error { return c.Grant(ctx, connector.Op{}, a, "cache-read") },
		func() error { return c.Grant(ctx, connector.Op{}, a, "queue-write") },
		func() error {
			return c.SetCredential(ctx, connector.Op{}, a, connector.Credential{Secret: "pw-revoke-test"})
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := login(ctx, a.Name, "pw-revoke-test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc := s.(session).c
	if err := rc.Get(ctx, "cache:x").Err(); err != nil && err != goredis.Nil {
		t.Fatalf("GET cache:x with cache-read: %v", err)
	}
	if err := rc.LPush(ctx, "queue:x", "1").Err(); err != nil {
		t.Fatalf("LPUSH queue:x with queue-write: %v", err)
	}
	if err := c.Revoke(ctx, connector.Op{}, a, "queue-write"); err != nil {
		t.Fatal(err)
	}
	if err := rc.LPush(ctx, "queue:x", "2").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("LPUSH after revoking queue-write = %v, want NOPERM", err)
	}
	if err := rc.Get(ctx, "cache:x").Err(); err != nil && err != goredis.Nil {
		t.Fatalf("GET cache:x after revoking only queue-write: %v", err)
	}
	if err := rc.Get(ctx, "secret:x").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("GET outside every rule set = %v, want NOPERM", err)
	}
	admin := goredis.NewClient(&goredis.Options{Addr: addr()})
	defer admin.Close()
	admin.Del(ctx, "queue:x")
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		settings map[string]any
		targets  map[string]map[string]any
		want     string
	}{
		{map[string]any{}, nil, "addr is required"},
		{map[string]any{"addr": "h:1", "password": "hunter2"}, nil, "must be a reference"},
		{map[string]any{"addr": "h:1"}, map[string]map[string]any{"e": {"rules": []any{"nopass"}}}, `rule "nopass" is not allowed`},
		{map[string]any{"addr": "h:1"}, map[string]map[string]any{"e": {"rules": []any{">pw"}}}, `rule ">pw" is not allowed`},
		{map[string]any{"addr": "h:1"}, map[string]map[string]any{"e": {"rules": []any{"on"}}}, `rule "on" is not allowed`},
		{map[string]any{"addr": "h:1"}, map[string]map[string]any{"e": {"rules": []any{"+get ~x"}}}, `is not allowed`},
		{map[string]any{"addr": "h:1"}, map[string]map[string]any{"e": {}}, "at least one rule"},
	} {
		_, err := Open(context.Background(), connector.Config{System: "cache", Type: Type, Settings: tc.settings, Targets: tc.targets, CheckOnly: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%v, %v) = %v, want error containing %q", tc.settings, tc.targets, err, tc.want)
		}
	}
}

func TestProtectedUsers(t *testing.T) {
	c := open(t)
	for _, name := range []string{"default"} {
		if err := c.DisableAccount(context.Background(), connector.Op{}, connector.Account{Name: name}); err == nil {
			t.Errorf("DisableAccount(%q) succeeded", name)
		}
	}
}

// TestTLS: the connector reaches a TLS-only Redis, verifying it against
// the CA its settings name; a server another CA signed is refused.
func TestTLS(t *testing.T) {
	srv, err := testsvc.StartRedisTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	open := func(ca string) *Conn {
		t.Helper()
		c, err := Open(context.Background(), connector.Config{System: "cache", Type: Type,
			Settings: map[string]any{"addr": srv.Addr, "tls": map[string]any{"enabled": true, "caFile": ca}}, Targets: testTargets})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.(*Conn).Close() })
		return c.(*Conn)
	}
	ctx := context.Background()
	if err := open(srv.TLS.CA).EnsureAccount(ctx, connector.Op{}, connector.Account{Name: "tls-user"}); err != nil {
		t.Fatalf("EnsureAccount over TLS: %v", err)
	}
	other, err := testsvc.WriteTLSFiles(t.TempDir(), os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	if err := open(other.CA).EnsureAccount(ctx, connector.Op{}, connector.Account{Name: "tls-user2"}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server signed by another CA was accepted: %v", err)
	}
}
