package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"

	"github.com/go-ldap/ldap/v3"
	"github.com/jackc/pgx/v5"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/connectors"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/testsvc"
	"github.com/jml-dev/jml/internal/vault"
)

// deadStore is a store that stops answering once its process has
// "crashed": every transaction fails from then on, as if the process
// were gone, while calls already made to systems have landed.
type deadStore struct {
	store.Store
	dead atomic.Bool
}

var errCrashed = errors.New("the process crashed")

func (d *deadStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if d.dead.Load() {
		return errCrashed
	}
	return d.Store.Update(ctx, fn)
}

func (d *deadStore) View(ctx context.Context, fn func(store.Tx) error) error {
	if d.dead.Load() {
		return errCrashed
	}
	return d.Store.View(ctx, fn)
}

// crashAfterPassword is Redis's connector, and the process dies right
// after a password landed in Redis, before jml records it.
type crashAfterPassword struct {
	connector.Connector
	store *deadStore
}

func (c crashAfterPassword) SetCredential(ctx context.Context, op connector.Op, a connector.Account, cred connector.Credential) error {
	err := c.Connector.(connector.CredentialSetter).SetCredential(ctx, op, a, cred)
	c.store.dead.Store(true)
	return err
}

func (c crashAfterPassword) RevokeCredential(ctx context.Context, op connector.Op, a connector.Account, id string) error {
	return c.Connector.(connector.CredentialSetter).RevokeCredential(ctx, op, a, id)
}

// newEngine is an engine on st with the e2e policy (Redis reached
// directly); wrap, when set, may replace a system's connector.
func newEngine(t *testing.T, st store.Store, wrap func(system string, c connector.Connector) connector.Connector) *engine.Engine {
	t.Helper()
	pol, err := policy.Parse("e2e.yaml", []byte(policyText(redisAddr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := vault.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"E2E_PG_URL": pg.URL, "E2E_LDAP_PW": dir.Password, "E2E_MYSQL_DSN": mysqlDSN}
	open := connectors.Open
	if wrap != nil {
		open = func(ctx context.Context, cfg connector.Config) (connector.Connector, error) {
			c, err := connectors.Open(ctx, cfg)
			if err != nil {
				return nil, err
			}
			return wrap(cfg.System, c), nil
		}
	}
	e, err := engine.New(engine.Config{Store: st, Policy: pol, Sealer: sealer, Open: open, Getenv: func(k string) string { return env[k] }, FastPathGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCrashAfterCallsLanded: jml dies after a joiner's calls landed in
// Redis and before they were recorded. After the restart, a leaver
// leaves nothing enabled anywhere; without a leaver, the resumed joiner
// finds the Redis account it had created and completes (the account is
// jml's, not one made outside it).
func TestCrashAfterCallsLanded(t *testing.T) {
	t.Parallel()
	for _, leave := range []bool{true, false} {
		name := "then the joiner resumes"
		if leave {
			name = "then a leaver"
		}
		t.Run(name, func(t *testing.T) {
			account := "e2e.crash1"
			if !leave {
				account = "e2e.crash2"
			}
			// The private PostgreSQL and slapd live as long as the test
			// process: an account a run left there would be someone
			// else's to the next run (go test -count).
			dropEverywhere(t, account)
			t.Cleanup(func() { dropEverywhere(t, account) })
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "jml.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			dead := &deadStore{Store: st}
			first := newEngine(t, dead, func(system string, c connector.Connector) connector.Connector {
				if system == "cache" {
					return crashAfterPassword{Connector: c, store: dead}
				}
				return c
			})
			// The crashed process's engine is gone too: nothing of it runs
			// on after the test, into the next one.
			t.Cleanup(func() { first.Close() })
			res, err := first.Submit(ctx, admin, joiner(account))
			if err != nil {
				t.Fatal(err)
			}
			poll.Until(t, 10*time.Second, 5*time.Millisecond, func() (bool, string) {
				return dead.dead.Load(), "the joiner's Redis password was never set"
			})
			if h, _ := invariantRedis(t, account); !h.Enabled || !h.Secret {
				t.Fatalf("Redis before the restart: %s, want the joiner's user with its password", h)
			}

			// The restart: a new engine on the same database.
			second := newEngine(t, st, nil)
			f := &fixture{e: second, s: st}
			jctx, cancel := context.WithCancel(ctx)
			if err := st.Jobs().Start(jctx, second.Workers(), store.JobConfig{Workers: 4, FetchCooldown: time.Millisecond, PollInterval: 20 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stop, c := context.WithTimeout(context.Background(), 10*time.Second)
				defer c()
				st.Jobs().Stop(stop)
				cancel()
				second.Close()
			})
			if leave {
				if _, err := second.Submit(ctx, admin, leaver(account)); err != nil {
					t.Fatal(err)
				}
			} else if _, err := second.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			f.quiesce(t, 30*time.Second)
			f.checkInvariant(t, []string{account})
			if !leave {
				c := f.waitCase(t, res.CaseID, 10*time.Second, func(c *cases.Case) bool { return c.Status != cases.Running })
				if c.Status != cases.Completed {
					t.Fatalf("the resumed joiner: %s (%s)\n%s", c.Status, c.Reason, steps(c))
				}
				rec, _ := invariantRead(t, st, account)
				if rec.Identity.State != identity.Active {
					t.Fatalf("after the resumed joiner: %s", rec.Identity.State)
				}
			}
		})
	}
}

// dropEverywhere removes account from every system the e2e policy gives
// it one in: Redis and MariaDB (dropAccounts), the private PostgreSQL and
// the private directory.
func dropEverywhere(t *testing.T, account string) {
	t.Helper()
	dropAccounts([]string{account})
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{account}.Sanitize()); err != nil {
		t.Fatalf("dropping role %s: %v", account, err)
	}
	l, err := ldap.DialURL(dir.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind(testsvc.SlapdAdminDN, dir.Password); err != nil {
		t.Fatal(err)
	}
	dn := "uid=" + ldap.EscapeDN(account) + "," + testsvc.SlapdPeople
	m := ldap.NewModifyRequest(devsGroup, nil)
	m.Delete("member", []string{dn})
	if err := l.Modify(m); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
		t.Fatalf("removing %s from %s: %v", dn, devsGroup, err)
	}
	if err := l.Del(ldap.NewDelRequest(dn, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		t.Fatalf("deleting %s: %v", dn, err)
	}
}
