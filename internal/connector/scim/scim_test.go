package scim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	scimserver "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
	filterparser "github.com/scim2/filter-parser/v2"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/connectortest"
)

// The provider is a SCIM server built with github.com/elimity-com/scim, a
// library jml did not write: it parses and validates requests, filters,
// PATCH paths and paging against the RFC schemas; the handlers below only
// keep resources in memory.

type store struct {
	mu     sync.Mutex
	items  map[string]scimserver.ResourceAttributes
	order  []string
	next   int
	unique string // attribute whose value must be unique
}

func newStore(unique string) *store {
	return &store{items: map[string]scimserver.ResourceAttributes{}, unique: unique}
}

func (s *store) resource(id string) scimserver.Resource {
	attrs := scimserver.ResourceAttributes{}
	for k, v := range s.items[id] {
		if k != "password" {
			attrs[k] = v
		}
	}
	r := scimserver.Resource{ID: id, Attributes: attrs}
	if ext, ok := s.items[id]["externalId"].(string); ok {
		r.ExternalID = optional.NewString(ext)
	}
	return r
}

func (s *store) Create(_ *http.Request, attrs scimserver.ResourceAttributes) (scimserver.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.items {
		if strings.EqualFold(fmt.Sprint(a[s.unique]), fmt.Sprint(attrs[s.unique])) {
			return scimserver.Resource{}, scimerrors.ScimErrorUniqueness
		}
	}
	s.next++
	id := strconv.Itoa(s.next)
	s.items[id] = attrs
	s.order = append(s.order, id)
	return s.resource(id), nil
}

func (s *store) Get(_ *http.Request, id string) (scimserver.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.items[id] == nil {
		return scimserver.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
	}
	return s.resource(id), nil
}

func (s *store) GetAll(_ *http.Request, p scimserver.ListRequestParams) (scimserver.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var match []string
	for _, id := range s.order {
		if p.FilterValidator != nil && p.FilterValidator.PassesFilter(s.items[id]) != nil {
			continue
		}
		match = append(match, id)
	}
	page := scimserver.Page{TotalResults: len(match), Resources: []scimserver.Resource{}}
	for i := max(p.StartIndex, 1) - 1; i < len(match) && len(page.Resources) < p.Count; i++ {
		page.Resources = append(page.Resources, s.resource(match[i]))
	}
	return page, nil
}

func (s *store) Replace(_ *http.Request, id string, attrs scimserver.ResourceAttributes) (scimserver.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.items[id] == nil {
		return scimserver.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
	}
	s.items[id] = attrs
	return s.resource(id), nil
}

func (s *store) Delete(_ *http.Request, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.items[id] == nil {
		return scimerrors.ScimErrorResourceNotFound(id)
	}
	delete(s.items, id)
	s.order = slices.DeleteFunc(s.order, func(x string) bool { return x == id })
	return nil
}

func (s *store) Patch(_ *http.Request, id string, ops []scimserver.PatchOperation) (scimserver.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.items[id]
	if a == nil {
		return scimserver.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
	}
	for _, op := range ops {
		if op.Path == nil {
			return scimserver.Resource{}, scimerrors.ScimErrorInvalidPath
		}
		name := op.Path.AttributePath.AttributeName
		switch {
		case name == "members" && op.Op == "add":
			members, _ := a["members"].([]any)
			for _, v := range op.Value.([]any) {
				val := v.(map[string]any)["value"]
				if !slices.ContainsFunc(members, func(m any) bool { return m.(map[string]any)["value"] == val }) {
					members = append(members, map[string]any{"value": val})
				}
			}
			a["members"] = members
		case name == "members" && op.Op == "remove":
			expr, ok := op.Path.ValueExpression.(*filterparser.AttributeExpression)
			if !ok {
				return scimserver.Resource{}, scimerrors.ScimErrorInvalidPath
			}
			members, _ := a["members"].([]any)
			a["members"] = slices.DeleteFunc(members, func(m any) bool { return m.(map[string]any)["value"] == expr.CompareValue })
		case op.Op == "replace":
			a[name] = op.Value
		default:
			return scimserver.Resource{}, scimerrors.ScimErrorInvalidPath
		}
	}
	return s.resource(id), nil
}

type provider struct {
	users, groups *store
	srv           *httptest.Server
	throttle      atomic.Int32 // answer 429 to this many requests
	requests      atomic.Int32
}

const token = "scim-test-token"

func newProvider(t *testing.T, pageSize int) *provider {
	tg := &provider{users: newStore("userName"), groups: newStore("displayName")}
	srv, err := scimserver.NewServer(&scimserver.ServerArgs{
		ServiceProviderConfig: &scimserver.ServiceProviderConfig{SupportFiltering: true, SupportPatch: true, MaxResults: pageSize},
		ResourceTypes: []scimserver.ResourceType{
			{ID: optional.NewString("User"), Name: "User", Endpoint: "/Users", Schema: schema.CoreUserSchema(), Handler: tg.users},
			{ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups", Schema: schema.CoreGroupSchema(), Handler: tg.groups},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.requests.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if tg.throttle.Load() > 0 {
			tg.throttle.Add(-1)
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		http.StripPrefix("/scim", srv).ServeHTTP(w, r)
	}))
	t.Cleanup(tg.srv.Close)
	for _, g := range []string{"support", "billing", "admins"} {
		if _, err := tg.groups.Create(nil, scimserver.ResourceAttributes{"displayName": g}); err != nil {
			t.Fatal(err)
		}
	}
	return tg
}

func (tg *provider) open(t *testing.T, pageSize int) *Conn {
	t.Helper()
	c, err := Open(context.Background(), connector.Config{System: "helpdesk", Type: Type,
		Settings: map[string]any{"baseURL": tg.srv.URL + "/scim/v2", "auth": map[string]any{"type": "bearer", "token": "env:T"}, "pageSize": pageSize},
		Targets:  map[string]map[string]any{"support": {"group": "support"}, "billing": {"group": "billing"}},
		Getenv:   func(string) string { return token }})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Conn)
}

var op = connector.Op{IdempotencyKey: "case/1"}

func state(t *testing.T, c *Conn, name string) (connector.AccountState, int) {
	t.Helper()
	all, err := c.ListAccounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st connector.AccountState
	n := 0
	for _, a := range all {
		if a.Name == name {
			st, n = a, n+1
		}
	}
	return st, n
}

func TestLifecycle(t *testing.T) {
	tg := newProvider(t, 2) // two per page: every list pages
	c := tg.open(t, 2)
	ctx := context.Background()
	// Users made outside jml, so that lists and lookups page.
	for i := 0; i < 5; i++ {
		if _, err := tg.users.Create(nil, scimserver.ResourceAttributes{"userName": fmt.Sprintf("other%d", i), "active": true}); err != nil {
			t.Fatal(err)
		}
	}
	a := connector.Account{Name: "alice@example.com", IdentityID: "idn_1"}
	for i := 0; i < 2; i++ {
		if err := c.EnsureAccount(ctx, op, a); err != nil {
			t.Fatalf("EnsureAccount %d: %v", i, err)
		}
		if err := c.Grant(ctx, op, a, "support"); err != nil {
			t.Fatalf("Grant %d: %v", i, err)
		}
	}
	if st, n := state(t, c, a.Name); n != 1 || st.Disabled || !slices.Equal(st.Entitlements, []string{"support"}) {
		t.Fatalf("after ensure and grant twice: %d listed, %+v", n, st)
	}
	if err := c.Revoke(ctx, op, a, "billing"); err != nil {
		t.Fatalf("Revoke never granted: %v", err)
	}
	if err := c.Revoke(ctx, op, connector.Account{Name: "nobody"}, "billing"); err != nil {
		t.Fatalf("Revoke for a missing account: %v", err)
	}
	if err := c.DisableAccount(ctx, op, a); err != nil {
		t.Fatal(err)
	}
	if st, _ := state(t, c, a.Name); !st.Disabled {
		t.Fatalf("after disable: %+v", st)
	}
	if err := c.EnsureAccount(ctx, op, a); err != nil {
		t.Fatal(err)
	}
	if st, _ := state(t, c, a.Name); st.Disabled {
		t.Fatalf("after ensure again: %+v", st)
	}
	if err := c.Revoke(ctx, op, a, "support"); err != nil {
		t.Fatal(err)
	}
	if st, _ := state(t, c, a.Name); len(st.Entitlements) != 0 {
		t.Fatalf("after revoke: %+v", st)
	}
	if err := c.DeleteAccount(ctx, op, a); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAccount(ctx, op, a); err != nil {
		t.Fatalf("delete again: %v", err)
	}
	if err := c.DisableAccount(ctx, op, a); err != nil {
		t.Fatalf("disable a missing account: %v", err)
	}
	if _, n := state(t, c, a.Name); n != 0 {
		t.Fatal("deleted user still listed")
	}
	// The server does not support password changes, and says so.
	if err := c.SetCredential(ctx, op, connector.Account{Name: "other1"}, connector.Credential{Secret: "x"}); err == nil || !strings.Contains(err.Error(), "does not support password changes") {
		t.Fatalf("SetCredential = %v", err)
	}
}

// TestListIsExact: users made outside jml are listed, with groups no
// entitlement targets under Other.
func TestListIsExact(t *testing.T) {
	tg := newProvider(t, 3)
	c := tg.open(t, 3)
	u, err := tg.users.Create(nil, scimserver.ResourceAttributes{"userName": "foreign", "active": false})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"1", "3"} { // support, admins
		tg.groups.items[g]["members"] = []any{map[string]any{"value": u.ID}}
	}
	st, n := state(t, c, "foreign")
	if n != 1 || !st.Disabled || !slices.Equal(st.Entitlements, []string{"support"}) || !slices.Equal(st.Other, []string{"group:admins"}) {
		t.Fatalf("foreign user: %d listed, %+v", n, st)
	}
}

// TestHostileNames: a userName that tries to widen the lookup filter
// finds nothing but itself.
func TestHostileNames(t *testing.T) {
	tg := newProvider(t, 10)
	c := tg.open(t, 10)
	ctx := context.Background()
	if _, err := tg.users.Create(nil, scimserver.ResourceAttributes{"userName": "victim", "active": true}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{`x" or userName pr or userName eq "y`, `back\slash`, `quo"te`, `(paren)`, `star*`, `Jürgen`} {
		a := connector.Account{Name: name}
		if err := c.DisableAccount(ctx, op, a); err != nil {
			t.Fatalf("disable %q: %v", name, err)
		}
		if st, _ := state(t, c, "victim"); st.Disabled {
			t.Fatalf("disabling %q disabled victim", name)
		}
		if err := c.EnsureAccount(ctx, op, a); err != nil {
			t.Fatalf("ensure %q: %v", name, err)
		}
		if _, n := state(t, c, name); n != 1 {
			t.Fatalf("%q listed %d times", name, n)
		}
		if err := c.DeleteAccount(ctx, op, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.EnsureAccount(ctx, op, connector.Account{Name: "line\nbreak"}); err == nil {
		t.Fatal("a userName with a newline was sent")
	}
}

// TestRateLimit: 429 with Retry-After is waited out and the request sent
// again.
func TestRateLimit(t *testing.T) {
	tg := newProvider(t, 10)
	c := tg.open(t, 10)
	tg.throttle.Store(2)
	if err := c.EnsureAccount(context.Background(), op, connector.Account{Name: "bob"}); err != nil {
		t.Fatalf("EnsureAccount through two 429s: %v", err)
	}
	if _, n := state(t, c, "bob"); n != 1 {
		t.Fatal("bob not created")
	}
	// A Retry-After longer than maxRetryAfter fails the step instead.
	c.maxRetryAfter = 0
	tg.throttle.Store(1)
	err := c.EnsureAccount(context.Background(), op, connector.Account{Name: "carol"})
	if err == nil || !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), "Retry-After 1") {
		t.Fatalf("EnsureAccount with a long Retry-After = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		settings map[string]any
		targets  map[string]map[string]any
		want     string
	}{
		{map[string]any{"baseURL": "http://saas.example.com/scim/v2", "auth": map[string]any{"type": "bearer", "token": "env:T"}}, nil, "http is allowed only to localhost"},
		{map[string]any{"baseURL": "https://x/scim/v2", "auth": map[string]any{"type": "bearer", "token": "abc"}}, nil, "must be a reference"},
		{map[string]any{"baseURL": "https://x/scim/v2", "auth": map[string]any{"type": "oauth"}}, nil, "not bearer or basic"},
		{map[string]any{"baseURL": "https://x/scim/v2", "auth": map[string]any{"type": "basic", "password": "env:P"}}, nil, "auth.username is required"},
		{map[string]any{"baseURL": "https://x/scim/v2", "auth": map[string]any{"type": "bearer", "token": "env:T"}}, map[string]map[string]any{"e": {}}, "give group"},
	} {
		_, err := Open(context.Background(), connector.Config{System: "s", Type: Type, Settings: tc.settings, Targets: tc.targets, CheckOnly: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%v) = %v, want %q", tc.settings, err, tc.want)
		}
	}
}

// TestConformance runs the connector conformance suite against the
// elimity-com/scim server. Its users log in through the application's own
// sign-on, not with a secret jml sets, so the suite checks disable by the
// listed state.
func TestConformance(t *testing.T) {
	tg := newProvider(t, 4)
	c := tg.open(t, 4)
	connectortest.Run(t, connectortest.Harness{
		Conn:         c,
		Entitlements: [2]string{"support", "billing"},
		Prefix:       "ct-",
		CreateForeign: func(_ context.Context, name string) error {
			u, err := tg.users.Create(nil, scimserver.ResourceAttributes{"userName": name, "active": true})
			if err != nil {
				return err
			}
			tg.groups.mu.Lock()
			defer tg.groups.mu.Unlock()
			members, _ := tg.groups.items["1"]["members"].([]any) // support
			tg.groups.items["1"]["members"] = append(members, map[string]any{"value": u.ID})
			return nil
		},
	})
}
