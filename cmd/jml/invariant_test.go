package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/invariant"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/pgtest"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/testsvc"
)

// The randomised invariant test's knobs. The defaults are the short
// variant the test command runs; docs give the long one.
var (
	invSeed     = flag.Uint64("invariant.seed", 0, "seed of TestInvariantUnderCrashes (0: from the clock); a failure prints it")
	invDuration = flag.Duration("invariant.duration", 8*time.Second, "how long TestInvariantUnderCrashes sends events, per backend")
	invKills    = flag.Int("invariant.kills", 3, "how many times TestInvariantUnderCrashes SIGKILLs a jml serve, per backend")
	invPeople   = flag.Int("invariant.people", 8, "how many identities TestInvariantUnderCrashes's events are about")
)

const invPolicy = `
systems:
  - {name: vault, type: builtin}
  - {name: appdb, type: postgres, config: {url: env:INV_PG_URL}}
  - {name: cache, type: redis, config: {addr: "{{redis}}"}}
  - {name: maria, type: mysql, config: {dsn: env:INV_MYSQL_DSN}}
  - name: dir
    type: ldap
    config: {url: "{{ldap}}", bindDN: "{{ldapAdmin}}", bindPassword: env:INV_LDAP_PW, baseDN: "{{people}}"}
entitlements:
  - {name: api, system: vault}
  - {name: app-read, system: appdb, target: {role: jmlinv_app_read}}
  - {name: cache-read, system: cache, target: {rules: ["+get", "~app:*"]}}
  - {name: cache-ops, system: cache, maxDuration: 2s, target: {rules: ["+set", "~ops:*"]}}
  - {name: maria-read, system: maria, target: {database: jmlinv_app, privileges: [SELECT]}}
  - {name: devs, system: dir, target: {group: "{{devs}}"}}
birthright:
  - name: engineering
    when: identity.attributes.department == "Engineering"
    entitlements: [api, app-read, cache-read, maria-read, devs]
  - name: ops
    when: identity.attributes.department == "Ops"
    entitlements: [cache-ops, devs]
credentials:
  - {name: api-key, when: 'identity.kind == "human"', system: vault, type: api_key}
  - {name: cache-pw, when: 'identity.attributes.department != "Sales"', system: cache, type: password}
  - {name: pg-pw, when: 'identity.attributes.department == "Engineering"', system: appdb, type: password}
  - {name: maria-pw, when: 'identity.attributes.department == "Engineering"', system: maria, type: password}
  - {name: dir-pw, when: 'identity.attributes.department == "Ops"', system: dir, type: password}
`

// TestInvariantUnderCrashes is jml's central promise tried from outside:
// clients send interleaved joiners, movers (widening and narrowing, both
// ways), leavers (some scheduled a second or three ahead, and moved by
// later ones), suspends, resumes and duplicates about a few identities,
// whose Redis grant in Ops lasts 2 s,
// with real Redis, PostgreSQL, MariaDB and LDAP targets, while jml serve is
// SIGKILLed at random moments and restarted: on SQLite, and on PostgreSQL
// with two replicas. Once jml has quiesced, every target is read as its
// administrator and checked against the invariant (invariant.Check), the
// audit chain is verified, no step may be recorded done twice, and no
// grant past its expiry may be held.
//
// It is seeded: a failure prints the seed, and -invariant.seed replays
// the same events, kills and timings (the machine's scheduling aside).
func TestInvariantUnderCrashes(t *testing.T) {
	// Not parallel: it loads the machine on purpose, and the tests that
	// run beside it would measure that load.
	seed := *invSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with: go test ./cmd/jml -run TestInvariantUnderCrashes -invariant.seed %d", seed)
		}
	})
	bin := filepath.Join(t.TempDir(), "jml")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	tg := newInvTargets(t)
	for i, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			runInvariant(t, bin, backend, seed+uint64(i), tg)
		})
	}
}

// invTargets are the real systems, reached as their administrators.
type invTargets struct {
	pgURL, mysqlDSN, redisAddr string
	maria                      *sql.DB
	redis                      *goredis.Client
	dir                        *testsvc.Server // a private slapd
}

const invDevs = "cn=jmlinv-devs," + testsvc.SlapdGroups

func newInvTargets(t *testing.T) *invTargets {
	t.Helper()
	ctx := context.Background()
	tg := &invTargets{pgURL: pgtest.AdminURL(), mysqlDSN: os.Getenv("JML_TEST_MYSQL"), redisAddr: os.Getenv("JML_TEST_REDIS")}
	if tg.mysqlDSN == "" {
		tg.mysqlDSN = "root@tcp(127.0.0.1:3306)/"
	}
	if tg.redisAddr == "" {
		tg.redisAddr = "127.0.0.1:6379"
	}
	pc, err := pgx.Connect(ctx, tg.pgURL)
	if err != nil {
		t.Fatalf("PostgreSQL is required at %s: %v", tg.pgURL, err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, `DO $$ BEGIN CREATE ROLE jmlinv_app_read NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`); err != nil {
		t.Fatal(err)
	}
	if tg.maria, err = sql.Open("mysql", tg.mysqlDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.maria.Close() })
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS jmlinv_app", "CREATE TABLE IF NOT EXISTS jmlinv_app.t (id INT)"} {
		if _, err := tg.maria.ExecContext(ctx, q); err != nil {
			t.Fatalf("MariaDB is required at %s: %v", tg.mysqlDSN, err)
		}
	}
	tg.redis = goredis.NewClient(&goredis.Options{Addr: tg.redisAddr, Protocol: 2})
	t.Cleanup(func() { tg.redis.Close() })
	if err := tg.redis.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is required at %s: %v", tg.redisAddr, err)
	}
	if tg.dir, err = testsvc.StartSlapd(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.dir.Stop() })
	l, err := ldap.DialURL(tg.dir.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind(testsvc.SlapdAdminDN, tg.dir.Password); err != nil {
		t.Fatal(err)
	}
	req := ldap.NewAddRequest(invDevs, nil)
	req.Attribute("objectClass", []string{"groupOfNames"})
	req.Attribute("member", []string{"cn=placeholder," + testsvc.SlapdSuffix})
	if err := l.Add(req); err != nil {
		t.Fatal(err)
	}
	return tg
}

// drop removes accounts from every target.
func (tg *invTargets) drop(t *testing.T, accounts []string) {
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, tg.pgURL)
	if err != nil {
		t.Error(err)
		return
	}
	defer pc.Close(ctx)
	for _, a := range accounts {
		tg.redis.Do(ctx, "ACL", "DELUSER", a)
		tg.maria.ExecContext(ctx, "DROP USER IF EXISTS `"+a+"`@'%'")
		pc.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{a}.Sanitize())
	}
}

func (tg *invTargets) targets() map[string]invariant.Target {
	return map[string]invariant.Target{
		"appdb": invariant.Postgres{URL: tg.pgURL, Roles: []string{"jmlinv_app_read"}},
		"cache": invariant.Redis{Client: tg.redis},
		"maria": invariant.MariaDB{DB: tg.maria, Host: "%"},
		"dir":   invariant.LDAP{URL: tg.dir.URL, BindDN: testsvc.SlapdAdminDN, Password: tg.dir.Password, People: testsvc.SlapdPeople, Groups: testsvc.SlapdGroups},
	}
}

// cluster is the jml serve processes of one run: one on SQLite, two
// replicas on PostgreSQL.
type cluster struct {
	t     *testing.T
	bin   string
	dirs  []string
	token string
	mu    sync.Mutex
	srvs  []*server
}

func (c *cluster) start(i int) {
	s := startServer(c.t, c.bin, c.dirs[i], c.token)
	c.mu.Lock()
	c.srvs[i] = s
	c.mu.Unlock()
}

// urls returns the servers' URLs, each nil slot skipped.
func (c *cluster) urls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.srvs {
		if s != nil {
			out = append(out, s.url)
		}
	}
	return out
}

// kill SIGKILLs server i and waits for it to die.
func (c *cluster) kill(i int) {
	c.mu.Lock()
	s := c.srvs[i]
	c.srvs[i] = nil
	c.mu.Unlock()
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
}

// stop ends every server gracefully.
func (c *cluster) stop() {
	for i, s := range c.srvs {
		if s != nil {
			s.cmd.Process.Signal(syscall.SIGTERM)
			s.cmd.Wait()
			c.srvs[i] = nil
		}
	}
}

func runInvariant(t *testing.T, bin, backend string, seed uint64, tg *invTargets) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	prefix := fmt.Sprintf("jmlinv.%s%d.", backend[:2], seed%100000)
	accounts := make([]string, *invPeople)
	for i := range accounts {
		accounts[i] = prefix + strconv.Itoa(i)
	}
	tg.drop(t, accounts)
	t.Cleanup(func() { tg.drop(t, accounts) })

	t.Setenv("INV_PG_URL", tg.pgURL)
	t.Setenv("INV_MYSQL_DSN", tg.mysqlDSN)
	t.Setenv("INV_LDAP_PW", tg.dir.Password)
	base := t.TempDir()
	policy := filepath.Join(base, "policy.yaml")
	text := strings.NewReplacer("{{redis}}", tg.redisAddr, "{{ldap}}", tg.dir.URL, "{{ldapAdmin}}", testsvc.SlapdAdminDN,
		"{{people}}", testsvc.SlapdPeople, "{{devs}}", invDevs).Replace(invPolicy)
	if err := os.WriteFile(policy, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	db, replicas := "sqlite:"+filepath.Join(base, "jml.db"), 1
	if backend == "postgres" {
		db, replicas = pgtest.NewDatabase(t), 2
	}
	cfg := fmt.Sprintf("policy: %s\ndb: %s\njobs:\n  workers: 4\n  fetchCooldown: 2ms\n  pollInterval: 20ms\nlog:\n  level: warn\n", policy, db)
	cl := &cluster{t: t, bin: bin, token: "invariant-test-admin-token-0", srvs: make([]*server, replicas)}
	for i := 0; i < replicas; i++ {
		d := filepath.Join(base, "replica"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "jml.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cl.dirs = append(cl.dirs, d)
	}
	// The first replica migrates the database alone.
	for i := 0; i < replicas; i++ {
		cl.start(i)
	}
	defer cl.stop()

	// The kills, at seeded moments within the run's duration.
	deadline := time.Now().Add(*invDuration)
	run, stop := context.WithDeadline(context.Background(), deadline)
	defer stop()
	killsDone := make(chan struct{})
	go func() {
		defer close(killsDone)
		for k := 0; k < *invKills; k++ {
			poll.Pause(run, time.Duration(rng.Int64N(int64(*invDuration)/int64(*invKills+1))))
			i := k % replicas
			cl.kill(i)
			poll.Pause(context.Background(), time.Duration(rng.IntN(300))*time.Millisecond) // down a moment
			cl.start(i)
		}
	}()

	// The clients, each with its own seeded stream of events.
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := map[string]int{} // event type -> accepted
	for c := 0; c < 3; c++ {
		crng := rand.New(rand.NewPCG(seed+uint64(c)+1, uint64(c)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var history []map[string]any
			for n := 0; time.Now().Before(deadline); n++ {
				ev := randomEvent(crng, accounts, fmt.Sprintf("c%d-%d", c, n), history)
				history = append(history, ev)
				code := sendRetrying(cl, crng, ev)
				mu.Lock()
				sent[fmt.Sprintf("%v %d", ev["type"], code)]++
				mu.Unlock()
				poll.Pause(run, time.Duration(crng.IntN(15))*time.Millisecond)
			}
		}()
	}
	wg.Wait()
	<-killsDone
	t.Logf("seed %d: events by type and answer: %v", seed, sent)

	// Quiesced: no step pending on any replica, no grant held past its
	// expiry and nothing scheduled, three times in a row, once every grant
	// the events gave has had its 2 s and every scheduled leaver its time.
	// A system that is down would hold steps pending; none is down here.
	calm := 0
	poll.Until(t, 90*time.Second, 100*time.Millisecond, func() (bool, string) {
		n, past, err := pendingWork(cl.urls()[0])
		var due int
		if err == nil {
			due, err = scheduledEvents(cl.urls()[0], cl.token)
		}
		if err != nil {
			calm = 0
			return false, err.Error()
		}
		if n == 0 && past == 0 && due == 0 && time.Since(deadline) > 3*time.Second {
			calm++
		} else {
			calm = 0
		}
		return calm >= 3, fmt.Sprintf("jml has not quiesced: %d steps pending, %d grants past their expiry, %d events scheduled", n, past, due)
	})
	cl.stop()

	ctx := context.Background()
	var st store.Store
	var err error
	if backend == "postgres" {
		st, err = postgres.Open(ctx, db, postgres.Options{})
	} else {
		st, err = sqlite.Open(ctx, strings.TrimPrefix(db, "sqlite:"), sqlite.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vs, err := invariant.Check(ctx, st, "hr", accounts, tg.targets())
	if err != nil {
		t.Fatal(err)
	}
	explained := map[string]bool{}
	for _, v := range vs {
		t.Error(v)
		if !explained[v.Account] {
			explained[v.Account] = true
			t.Logf("cases of %s:\n%s", v.Account, invariant.History(ctx, st, "hr", v.Account))
		}
	}
	checkAuditOnce(t, st)
	if err := st.View(ctx, func(tx store.Tx) error {
		held, err := tx.ListExpiringGrants(ctx, time.Now(), 100)
		for _, g := range held {
			t.Errorf("%s still holds %s, which expired at %s", g.IdentityID, g.Entitlement, g.ExpiresAt)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// randomEvent returns one of a joiner, a mover (to another department), a
// leaver, a suspend, a resume, or a duplicate of an earlier event.
func randomEvent(rng *rand.Rand, accounts []string, id string, history []map[string]any) map[string]any {
	if len(history) > 0 && rng.IntN(20) == 0 {
		return history[rng.IntN(len(history))]
	}
	who := accounts[rng.IntN(len(accounts))]
	depts := []string{"Engineering", "Ops", "Sales"}
	ev := map[string]any{"source": "hr", "id": id, "externalId": who}
	switch r := rng.IntN(100); {
	case r < 25:
		ev["type"], ev["kind"] = "joiner", "human"
		ev["attributes"] = map[string]any{"department": depts[rng.IntN(2)]}
	case r < 60:
		ev["type"] = "mover"
		ev["attributes"] = map[string]any{"department": depts[rng.IntN(3)]}
	case r < 72:
		ev["type"] = "leaver"
	case r < 80:
		// A leaver a second or three ahead: a later one moves it.
		ev["type"] = "leaver"
		ev["effectiveAt"] = time.Now().Add(time.Duration(1000+rng.IntN(2000)) * time.Millisecond).UTC().Format(time.RFC3339Nano)
	case r < 90:
		ev["type"] = "suspend"
	default:
		ev["type"] = "resume"
	}
	return ev
}

// sendRetrying posts ev to a live server, as a source would: again, every
// 50 ms, after a connection error (the server died) or a 5xx, until some
// server answers or 10 s have passed (then 0). It returns the HTTP status.
func sendRetrying(cl *cluster, rng *rand.Rand, ev map[string]any) int {
	b, _ := json.Marshal(ev)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); <-tick.C {
		urls := cl.urls()
		if len(urls) == 0 {
			continue
		}
		req, _ := http.NewRequest("POST", urls[rng.IntN(len(urls))]+"/v1/events", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+cl.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 500 {
			return resp.StatusCode
		}
	}
	return 0
}

// pendingWork adds up jml_pending_steps from a server's /metrics, and
// reads jml_grants_past_expiry.
func pendingWork(url string) (steps, pastExpiry int, err error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	seen := false
	for _, line := range strings.Split(string(body), "\n") {
		if line == "jml_pending_scrape_ok 0" {
			return 0, 0, fmt.Errorf("pending steps could not be read from the store")
		}
		past := strings.HasPrefix(line, "jml_grants_past_expiry ")
		if !strings.HasPrefix(line, "jml_pending_steps{") && !past {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("metrics line %q: %v", line, err)
		}
		if past {
			pastExpiry, seen = int(v), true
		} else {
			steps += int(v)
		}
	}
	if !seen {
		return 0, 0, fmt.Errorf("no jml_grants_past_expiry in /metrics")
	}
	return steps, pastExpiry, nil
}

// scheduledEvents counts the events a server lists as scheduled.
func scheduledEvents(url, token string) (int, error) {
	req, _ := http.NewRequest("GET", url+"/v1/scheduled?kind=event", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET /v1/scheduled: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return 0, err
	}
	return len(l.Items), nil
}

// checkAuditOnce verifies the audit chain and that no step was recorded
// done twice; it returns how many records it verified and how many steps
// were done.
func checkAuditOnce(t *testing.T, st store.Store) (records, steps int) {
	t.Helper()
	ctx := context.Background()
	if err := st.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	done := map[string]int{}
	var v audit.Verifier
	err := st.View(ctx, func(tx store.Tx) error {
		if err := audit.Scan(ctx, tx, "", func(r *audit.Record) error {
			if err := v.Next(r); err != nil {
				return err
			}
			if r.Action == "step.done" {
				var d struct{ Seq int }
				json.Unmarshal(r.Data, &d)
				done[fmt.Sprintf("%s/%d", r.CaseID, d.Seq)]++
			}
			return nil
		}); err != nil {
			return err
		}
		seq, hash, err := tx.AuditHead(ctx)
		if err != nil {
			return err
		}
		return v.Finish(seq, hash)
	})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for step, n := range done {
		if n != 1 {
			t.Errorf("step %s recorded done %d times", step, n)
		}
	}
	return int(v.Count()), len(done)
}

// TestResumeWithinSecondsOfRestart: leavers wait on a Redis that hangs,
// their jobs mid-call, when jml serve is SIGKILLed. After the restart
// (default job settings) and Redis's recovery, every leaver is done in
// Redis within ten seconds, not after River's rescue delay.
func TestResumeWithinSecondsOfRestart(t *testing.T) {
	t.Parallel()
	tg := newInvTargets(t)
	proxy, err := testsvc.StartProxy(tg.redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	bin := filepath.Join(t.TempDir(), "jml")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	pol := `
systems:
  - {name: vault, type: builtin}
  - {name: cache, type: redis, config: {addr: "` + proxy.Addr + `"}}
entitlements:
  - {name: cache-read, system: cache, target: {rules: ["+get", "~app:*"]}}
birthright:
  - {name: all, when: 'true', entitlements: [cache-read]}
credentials:
  - {name: cache-pw, when: 'true', system: cache, type: password}
`
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jml.yaml"), []byte("policy: policy.yaml\ndb: sqlite:jml.db\nlog:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	accounts := []string{"jmlresume.0", "jmlresume.1", "jmlresume.2", "jmlresume.3"}
	tg.drop(t, accounts)
	t.Cleanup(func() { tg.drop(t, accounts) })
	const token = "resume-test-admin-token-000"
	srv := startServer(t, bin, dir, token)
	cl := &cluster{t: t, token: token, srvs: []*server{srv}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range accounts {
		ev := map[string]any{"source": "hr", "id": "j-" + a, "type": "joiner", "externalId": a, "kind": "human"}
		if code := sendRetrying(cl, rng, ev); code != 202 {
			t.Fatalf("joiner %s: %d", a, code)
		}
	}
	redisOn := func(a string) bool {
		h, err := invariant.Redis{Client: tg.redis}.Read(context.Background(), a)
		return err == nil && h.Enabled && h.Secret
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		for _, a := range accounts {
			if !redisOn(a) {
				return false, a + " was not provisioned in Redis"
			}
		}
		return true, ""
	})
	proxy.Hang()
	for _, a := range accounts {
		ev := map[string]any{"source": "hr", "id": "l-" + a, "type": "leaver", "externalId": a}
		if code := sendRetrying(cl, rng, ev); code != 202 {
			t.Fatalf("leaver %s: %d", a, code)
		}
	}
	// Once the fast path's grace has passed, the leavers' jobs run (their
	// calls hang): the process dies while River counts them as running.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "jml.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
		var n int
		err := db.QueryRow("SELECT COUNT(*) FROM river_job WHERE kind = 'jml.apply_case' AND state = 'running'").Scan(&n)
		return err == nil && n > 0, fmt.Sprintf("no leaver's job is running (%v)", err)
	})
	db.Close()
	srv.cmd.Process.Signal(syscall.SIGKILL)
	srv.cmd.Wait()
	proxy.Up()
	srv = startServer(t, bin, dir, token)
	restarted := time.Now()
	defer func() { srv.cmd.Process.Signal(syscall.SIGTERM); srv.cmd.Wait() }()
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, a := range accounts {
			if redisOn(a) {
				return false, fmt.Sprintf("%s still enabled in Redis %s after the restart\n%s", a, time.Since(restarted).Round(time.Millisecond), srv.log)
			}
		}
		return true, ""
	})
	t.Logf("every leaver done in Redis %s after the restart", time.Since(restarted).Round(time.Millisecond))
}
