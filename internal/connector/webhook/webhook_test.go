package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/connectortest"
	"github.com/jml-dev/jml/internal/signature"
)

const secret = "0123456789abcdef-webhook-secret"

// receiver is a system without a connector: it checks every request's
// signature, deduplicates on the idempotency key, and keeps accounts.
type receiver struct {
	mu       sync.Mutex
	seen     map[string]bool
	accounts map[string]map[string]bool // name -> entitlements
	// applied are the steps the connector sent that the receiver applied,
	// in order, as they arrived; foreign are accounts its administrator
	// made, with the groups they are in. list reads the system from these
	// alone.
	applied  []Step
	foreign  map[string][]string
	disabled map[string]bool
	secrets  map[string]string
	fail     int // answer 503 to this many requests
	bad      []string
	keys     []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := signature.Verify([]byte(secret), req.Header, body, time.Now(), 5*time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if r.fail > 0 {
		r.fail--
		w.Header().Set("Retry-After", "7")
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	key := req.Header.Get(HeaderIdempotency)
	r.keys = append(r.keys, key)
	if r.seen[key] {
		w.WriteHeader(http.StatusConflict)
		return
	}
	r.seen[key] = true
	var st Step
	if err := json.Unmarshal(body, &st); err != nil || st.ID != key {
		http.Error(w, "bad step", http.StatusBadRequest)
		return
	}
	name := st.Account.Name
	switch st.Action {
	case ActionEnsureAccount:
		if r.accounts[name] == nil {
			r.accounts[name] = map[string]bool{}
		}
		delete(r.disabled, name)
	case ActionDisableAccount:
		r.disabled[name] = true
	case ActionDeleteAccount:
		delete(r.accounts, name)
	case ActionGrant:
		if st.Target["group"] == nil {
			http.Error(w, "no target", http.StatusBadRequest)
			return
		}
		r.accounts[name][st.Entitlement] = true
	case ActionRevoke:
		delete(r.accounts[name], st.Entitlement)
	case ActionSetCredential:
		r.secrets[name] = st.Credential.Secret
	case ActionRevokeCredential:
		delete(r.secrets, name)
	}
	r.applied = append(r.applied, st)
	w.WriteHeader(http.StatusNoContent)
}

// groupEntitlements maps the groups of the receiving system to the
// entitlements TestConformance's policy targets at them.
var groupEntitlements = map[string]string{"support-agents": "agents", "tool-users": "tools"}

// list is what the receiving system holds, rebuilt from the steps the
// connector sent as a system keeps them: an account is in the group a
// grant targets, whatever jml calls the entitlement. A group no
// entitlement targets is listed in Other.
func (r *receiver) list() []connector.AccountState {
	r.mu.Lock()
	defer r.mu.Unlock()
	type account struct {
		disabled bool
		groups   map[string]bool
	}
	held := map[string]*account{}
	for name, groups := range r.foreign {
		a := &account{groups: map[string]bool{}}
		for _, g := range groups {
			a.groups[g] = true
		}
		held[name] = a
	}
	for _, st := range r.applied {
		name := st.Account.Name
		a := held[name]
		group, _ := st.Target["group"].(string)
		switch st.Action {
		case ActionEnsureAccount:
			if a == nil {
				a = &account{groups: map[string]bool{}}
				held[name] = a
			}
			a.disabled = false
		case ActionDeleteAccount:
			delete(held, name)
		case ActionDisableAccount:
			if a != nil {
				a.disabled = true
			}
		case ActionGrant:
			if a != nil {
				a.groups[group] = true
			}
		case ActionRevoke:
			if a != nil {
				delete(a.groups, group)
			}
		}
	}
	var out []connector.AccountState
	for name, a := range held {
		st := connector.AccountState{Name: name, Disabled: a.disabled}
		for g := range a.groups {
			if e, ok := groupEntitlements[g]; ok {
				st.Entitlements = append(st.Entitlements, e)
			} else {
				st.Other = append(st.Other, g)
			}
		}
		slices.Sort(st.Entitlements)
		slices.Sort(st.Other)
		out = append(out, st)
	}
	return out
}

func setup(t *testing.T) (*Conn, *receiver) {
	t.Helper()
	r := &receiver{seen: map[string]bool{}, accounts: map[string]map[string]bool{}, disabled: map[string]bool{}, secrets: map[string]string{},
		foreign: map[string][]string{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	c, err := Open(context.Background(), connector.Config{System: "tickets", Type: Type,
		Settings: map[string]any{"url": srv.URL + "/jml", "secret": "env:HOOK_SECRET"},
		Targets:  map[string]map[string]any{"agents": {"group": "support-agents"}},
		Getenv:   func(string) string { return secret }})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Conn), r
}

func TestLifecycleOverHTTP(t *testing.T) {
	c, r := setup(t)
	ctx := context.Background()
	a := connector.Account{Name: "alice", IdentityID: "idn_1"}
	n := 0
	op := func() connector.Op {
		n++
		return connector.Op{IdempotencyKey: "case_1/" + strconv.Itoa(n), CaseID: "case_1"}
	}
	steps := []func() error{
		func() error { return c.EnsureAccount(ctx, op(), a) },
		func() error { return c.Grant(ctx, op(), a, "agents") },
		func() error {
			return c.SetCredential(ctx, op(), a, connector.Credential{ID: "cred_1", Type: "password", Secret: "s3cret", ExpiresAt: time.Now().Add(time.Hour)})
		},
	}
	for _, f := range steps {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	if !r.accounts["alice"]["agents"] || r.secrets["alice"] != "s3cret" {
		t.Fatalf("receiver state: %v %v", r.accounts, r.secrets)
	}
	// A retried step (same key) is answered 409 and counts as done.
	again := connector.Op{IdempotencyKey: "case_1/2", CaseID: "case_1"}
	if err := c.Grant(ctx, again, a, "agents"); err != nil {
		t.Fatalf("retried grant: %v", err)
	}
	for _, f := range []func() error{
		func() error { return c.Revoke(ctx, op(), a, "agents") },
		func() error { return c.RevokeCredential(ctx, op(), a, "cred_1") },
		func() error { return c.DisableAccount(ctx, op(), a) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	if r.accounts["alice"]["agents"] || r.secrets["alice"] != "" || !r.disabled["alice"] {
		t.Fatalf("after leaver steps: %v %v %v", r.accounts, r.secrets, r.disabled)
	}
	if len(r.bad) != 0 {
		t.Fatalf("bad signatures: %v", r.bad)
	}
	if r.keys[3] != "case_1/2" {
		t.Fatalf("idempotency keys: %v", r.keys)
	}
}

func TestErrorsAreRetried(t *testing.T) {
	c, r := setup(t)
	r.fail = 1
	err := c.EnsureAccount(context.Background(), connector.Op{IdempotencyKey: "k1"}, connector.Account{Name: "bob"})
	if err == nil || !strings.Contains(err.Error(), "HTTP 503 (Retry-After 7): maintenance") {
		t.Fatalf("EnsureAccount against a 503 = %v", err)
	}
	if err := c.EnsureAccount(context.Background(), connector.Op{IdempotencyKey: "k1"}, connector.Account{Name: "bob"}); err != nil {
		t.Fatalf("the retry = %v", err)
	}
	// A receiver with another secret refuses: the connector reports it.
	c.secret = []byte("another-secret-of-16+bytes")
	err = c.EnsureAccount(context.Background(), connector.Op{IdempotencyKey: "k2"}, connector.Account{Name: "carol"})
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("wrong secret = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		settings map[string]any
		want     string
	}{
		{map[string]any{"url": "http://tickets.example.com/hook", "secret": "env:S"}, "http is allowed only to localhost"},
		{map[string]any{"url": "ftp://x/", "secret": "env:S"}, "is not an http(s) URL"},
		{map[string]any{"url": "https://x/", "secret": "hunter2"}, "must be a reference"},
		{map[string]any{"url": "https://x/", "secret": "env:S", "timeout": "soon"}, "not a positive duration"},
	} {
		_, err := Open(context.Background(), connector.Config{System: "t", Type: Type, Settings: tc.settings, CheckOnly: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%v) = %v, want %q", tc.settings, err, tc.want)
		}
	}
	_, err := Open(context.Background(), connector.Config{System: "t", Type: Type, Settings: map[string]any{"url": "https://x/", "secret": "env:S"}, Getenv: func(string) string { return "short" }})
	if err == nil || !strings.Contains(err.Error(), "at least 16 bytes") {
		t.Errorf("short secret: %v", err)
	}
}

// TestConformance runs the connector conformance suite against the
// receiver above. The suite reads the receiver as a system: the groups the
// connector's requests put each account in (receiver.list), so a request
// that names the right entitlement but targets the wrong group shows.
func TestConformance(t *testing.T) {
	c, r := setup(t)
	c.targets["tools"] = map[string]any{"group": "tool-users"}
	connectortest.Run(t, connectortest.Harness{
		Conn:         c,
		Entitlements: [2]string{"agents", "tools"},
		Prefix:       "ct-",
		List: func(context.Context) ([]connector.AccountState, error) {
			return r.list(), nil
		},
		CreateForeign: func(_ context.Context, name string) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.accounts[name] = map[string]bool{"agents": true}
			r.foreign[name] = []string{"support-agents"}
			return nil
		},
	})
}
