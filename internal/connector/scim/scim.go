// Package scim is the outbound SCIM 2.0 connector (RFC 7643, RFC 7644), for
// SaaS applications that accept SCIM provisioning. An account is a User
// (userName = the account name, externalId = jml's identity ID); an
// entitlement is membership in a Group, changed with PATCH on the Group;
// disable sets active to false. What the service provider supports (PATCH,
// filtering, password changes) is read from /ServiceProviderConfig once and
// followed: without PATCH, users are replaced with PUT; without filtering,
// they are found by paging.
//
// Filter values are JSON-quoted, so an account name cannot change a
// filter's meaning; 429 and 503 answers are retried after their
// Retry-After, up to maxRetryAfter; lists are paged with startIndex and
// count.
package scim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
)

// Type is the connector type name in a policy.
const Type = "scim"

const (
	userSchema  = "urn:ietf:params:scim:schemas:core:2.0:User"
	patchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	mediaType   = "application/scim+json"
)

type settings struct {
	BaseURL string `yaml:"baseURL"` // e.g. https://app.example.com/scim/v2
	Auth    struct {
		Type     string `yaml:"type"`     // bearer or basic
		Token    string `yaml:"token"`    // bearer: env:NAME or file:PATH
		Username string `yaml:"username"` // basic
		Password string `yaml:"password"` // basic: env:NAME or file:PATH
	} `yaml:"auth"`
	Timeout string `yaml:"timeout"` // per request, default 30s
	// PageSize is the count asked for per page when listing (default 100).
	PageSize int `yaml:"pageSize"`
	// MaxRetryAfter is the longest Retry-After waited for in place
	// (default 30s); a longer one fails the step, whose job retries later.
	MaxRetryAfter string `yaml:"maxRetryAfter"`
}

type target struct {
	Group   string `yaml:"group"`   // the group's displayName
	GroupID string `yaml:"groupId"` // or its id
}

// Conn is a SCIM client connector.
type Conn struct {
	base          string
	auth          func(*http.Request)
	client        *http.Client
	targets       map[string]target
	pageSize      int
	maxRetryAfter time.Duration

	mu       sync.Mutex
	spc      *providerConfig
	groupIDs map[string]string // displayName -> id
}

// providerConfig is what jml reads of /ServiceProviderConfig.
type providerConfig struct {
	Patch          struct{ Supported bool } `json:"patch"`
	Filter         struct{ Supported bool } `json:"filter"`
	ChangePassword struct{ Supported bool } `json:"changePassword"`
}

// Open validates cfg and returns a connector.
func Open(_ context.Context, cfg connector.Config) (connector.Connector, error) {
	var st settings
	if err := connector.Decode(cfg.Settings, &st); err != nil {
		return nil, cfg.Errorf("config: %v", err)
	}
	if err := connector.CheckHTTPURL(st.BaseURL); err != nil {
		return nil, cfg.Errorf("baseURL: %v", err)
	}
	c := &Conn{base: strings.TrimRight(st.BaseURL, "/"), pageSize: 100, maxRetryAfter: 30 * time.Second, groupIDs: map[string]string{}}
	if st.PageSize < 0 || st.PageSize > 1000 {
		return nil, cfg.Errorf("pageSize: %d is not between 1 and 1000", st.PageSize)
	} else if st.PageSize > 0 {
		c.pageSize = st.PageSize
	}
	timeout := 30 * time.Second
	for name, v := range map[string]*time.Duration{"timeout": &timeout, "maxRetryAfter": &c.maxRetryAfter} {
		s := st.Timeout
		if name == "maxRetryAfter" {
			s = st.MaxRetryAfter
		}
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, cfg.Errorf("%s: %q is not a positive duration", name, s)
		}
		*v = d
	}
	targets, err := connector.DecodeTargets(cfg, func(tg target) error {
		if (tg.Group == "") == (tg.GroupID == "") {
			return errors.New("give group (displayName) or groupId")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.targets = targets
	switch st.Auth.Type {
	case "bearer":
		if err := cfg.CheckRef("auth.token", st.Auth.Token); err != nil {
			return nil, err
		}
	case "basic":
		if st.Auth.Username == "" {
			return nil, cfg.Errorf("auth.username is required for basic auth")
		}
		if err := cfg.CheckRef("auth.password", st.Auth.Password); err != nil {
			return nil, err
		}
	default:
		return nil, cfg.Errorf("auth.type: %q is not bearer or basic", st.Auth.Type)
	}
	if cfg.CheckOnly {
		return nil, nil
	}
	if st.Auth.Type == "bearer" {
		token, err := cfg.Secret("auth.token", st.Auth.Token)
		if err != nil {
			return nil, err
		}
		c.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
	} else {
		pw, err := cfg.Secret("auth.password", st.Auth.Password)
		if err != nil {
			return nil, err
		}
		user := st.Auth.Username
		c.auth = func(r *http.Request) { r.SetBasicAuth(user, pw) }
	}
	c.client = &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c, nil
}

// statusError is a non-2xx answer.
type statusError struct {
	method, path string
	status       int
	detail       string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d", e.method, e.path, e.status)
	if e.detail != "" {
		msg += ": " + e.detail
	}
	return msg
}

func isStatus(err error, status int) bool {
	var se *statusError
	return errors.As(err, &se) && se.status == status
}

// do sends a request and decodes a JSON answer into out (if not nil).
// 429 and 503 are retried after Retry-After, up to three times.
func (c *Conn) do(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		req.Header.Set("Accept", mediaType)
		if body != nil {
			req.Header.Set("Content-Type", mediaType)
		}
		c.auth(req)
		resp, err := c.client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // without the URL
			}
			return fmt.Errorf("%s %s: %w", method, pathOnly(path), err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			wait, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now())
			if ok && wait <= c.maxRetryAfter && attempt < 3 {
				select {
				case <-time.After(wait):
					continue
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			se := &statusError{method: method, path: pathOnly(path), status: resp.StatusCode, detail: scimDetail(data)}
			if ra := resp.Header.Get("Retry-After"); ra != "" {
				se.detail = strings.TrimSpace("Retry-After " + ra + " " + se.detail)
			}
			return se
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return &statusError{method: method, path: pathOnly(path), status: resp.StatusCode, detail: scimDetail(data)}
		}
		if out != nil && len(data) > 0 {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("%s %s: answer is not SCIM JSON: %w", method, pathOnly(path), err)
			}
		}
		return nil
	}
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// retryAfter reads Retry-After as seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// scimDetail returns the detail (and scimType) of a SCIM error body.
func scimDetail(data []byte) string {
	var e struct {
		Detail   string `json:"detail"`
		ScimType string `json:"scimType"`
	}
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	if e.ScimType != "" {
		return e.Detail + " (" + e.ScimType + ")"
	}
	return e.Detail
}

func (c *Conn) config(ctx context.Context) (*providerConfig, error) {
	c.mu.Lock()
	spc := c.spc
	c.mu.Unlock()
	if spc != nil {
		return spc, nil
	}
	spc = &providerConfig{}
	if err := c.do(ctx, http.MethodGet, "/ServiceProviderConfig", nil, spc); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	c.mu.Lock()
	c.spc = spc
	c.mu.Unlock()
	return spc, nil
}

// listPage is a SCIM ListResponse.
type listPage struct {
	TotalResults int               `json:"totalResults"`
	StartIndex   int               `json:"startIndex"`
	Resources    []json.RawMessage `json:"Resources"`
}

// each pages through endpoint (with an optional filter) and calls fn for
// every resource until fn returns false.
func (c *Conn) each(ctx context.Context, endpoint, filter string, fn func(json.RawMessage) bool) error {
	start := 1
	for {
		q := url.Values{"startIndex": {strconv.Itoa(start)}, "count": {strconv.Itoa(c.pageSize)}}
		if filter != "" {
			q.Set("filter", filter)
		}
		var page listPage
		if err := c.do(ctx, http.MethodGet, endpoint+"?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		for _, r := range page.Resources {
			if !fn(r) {
				return nil
			}
		}
		start += len(page.Resources)
		if len(page.Resources) == 0 || start > page.TotalResults {
			return nil
		}
	}
}

// user is the part of a SCIM User jml reads.
type user struct {
	ID       string `json:"id"`
	UserName string `json:"userName"`
	Active   *bool  `json:"active"`
}

// quote renders a filter value: a JSON string, so quotes and backslashes
// in names stay inside it (RFC 7644 §3.4.2.2 compValue).
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// findUser returns the user whose userName is name, or nil.
func (c *Conn) findUser(ctx context.Context, name string) (*user, error) {
	spc, err := c.config(ctx)
	if err != nil {
		return nil, err
	}
	if !spc.Filter.Supported {
		return c.scanUsers(ctx, "", name)
	}
	found, err := c.scanUsers(ctx, "userName eq "+quote(name), name)
	// Some providers do not unescape quotes and backslashes in filter
	// strings (the elimity-com/scim server does not); for such names a
	// filtered lookup that finds nothing is checked by paging.
	if err == nil && found == nil && strings.ContainsAny(name, `"\`) {
		return c.scanUsers(ctx, "", name)
	}
	return found, err
}

// scanUsers pages through the users filter selects and returns the one
// whose userName is name (case-insensitively, RFC 7643 §4.1.1; a filter
// the provider ignored is caught here too), or nil.
func (c *Conn) scanUsers(ctx context.Context, filter, name string) (*user, error) {
	var found *user
	var decodeErr error
	err := c.each(ctx, "/Users", filter, func(raw json.RawMessage) bool {
		var u user
		if decodeErr = json.Unmarshal(raw, &u); decodeErr != nil {
			return false
		}
		if strings.EqualFold(u.UserName, name) {
			found = &u
			return false
		}
		return true
	})
	if err == nil {
		err = decodeErr
	}
	return found, err
}

func checkName(a connector.Account) error {
	if a.Name == "" || len(a.Name) > 256 || strings.ContainsAny(a.Name, "\x00\r\n") {
		return &identity.Error{Code: identity.Invalid, Field: "account", Message: fmt.Sprintf("%q is not a userName jml sends (1 to 256 bytes, no control characters)", a.Name)}
	}
	return nil
}

func (c *Conn) EnsureAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	if err := checkName(a); err != nil {
		return err
	}
	u, err := c.findUser(ctx, a.Name)
	if err != nil {
		return err
	}
	if u == nil {
		body := map[string]any{"schemas": []string{userSchema}, "userName": a.Name, "externalId": a.IdentityID, "active": true}
		err := c.do(ctx, http.MethodPost, "/Users", body, nil)
		if isStatus(err, http.StatusConflict) {
			return nil // created meanwhile (uniqueness)
		}
		return err
	}
	if u.Active != nil && !*u.Active {
		return c.setActive(ctx, u.ID, true)
	}
	return nil
}

// setActive switches a user on or off: PATCH where supported, else a PUT
// of the user as read with active changed.
// AccountExists implements connector.Prober.
func (c *Conn) AccountExists(ctx context.Context, a connector.Account) (bool, error) {
	u, err := c.findUser(ctx, a.Name)
	return u != nil, err
}

var _ connector.Prober = (*Conn)(nil)

func (c *Conn) setActive(ctx context.Context, id string, active bool) error {
	spc, err := c.config(ctx)
	if err != nil {
		return err
	}
	path := "/Users/" + url.PathEscape(id)
	if spc.Patch.Supported {
		return c.do(ctx, http.MethodPatch, path, patchOps(map[string]any{"op": "replace", "path": "active", "value": active}), nil)
	}
	var full map[string]any
	if err := c.do(ctx, http.MethodGet, path, nil, &full); err != nil {
		return err
	}
	full["active"] = active
	delete(full, "meta")
	return c.do(ctx, http.MethodPut, path, full, nil)
}

func patchOps(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{patchSchema}, "Operations": ops}
}

func (c *Conn) DisableAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	if err := checkName(a); err != nil {
		return err
	}
	u, err := c.findUser(ctx, a.Name)
	if err != nil || u == nil {
		return err
	}
	if u.Active != nil && !*u.Active {
		return nil
	}
	return c.setActive(ctx, u.ID, false)
}

func (c *Conn) DeleteAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	if err := checkName(a); err != nil {
		return err
	}
	u, err := c.findUser(ctx, a.Name)
	if err != nil || u == nil {
		return err
	}
	err = c.do(ctx, http.MethodDelete, "/Users/"+url.PathEscape(u.ID), nil, nil)
	if isStatus(err, http.StatusNotFound) {
		return nil
	}
	return err
}

// groupID resolves an entitlement's group, by displayName once.
func (c *Conn) groupID(ctx context.Context, entitlement string) (string, error) {
	tg, ok := c.targets[entitlement]
	if !ok {
		return "", identity.Errorf(identity.Invalid, "entitlement %q has no target in this system", entitlement)
	}
	if tg.GroupID != "" {
		return tg.GroupID, nil
	}
	c.mu.Lock()
	id, ok := c.groupIDs[tg.Group]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	spc, err := c.config(ctx)
	if err != nil {
		return "", err
	}
	filter := ""
	if spc.Filter.Supported {
		filter = "displayName eq " + quote(tg.Group)
	}
	var decodeErr error
	err = c.each(ctx, "/Groups", filter, func(raw json.RawMessage) bool {
		var g struct{ ID, DisplayName string }
		if decodeErr = json.Unmarshal(raw, &g); decodeErr != nil {
			return false
		}
		if g.DisplayName == tg.Group {
			id = g.ID
			return false
		}
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("entitlement %s: no group with displayName %q", entitlement, tg.Group)
	}
	c.mu.Lock()
	c.groupIDs[tg.Group] = id
	c.mu.Unlock()
	return id, nil
}

func (c *Conn) Grant(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	return c.membership(ctx, a, entitlement, true)
}

func (c *Conn) Revoke(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	return c.membership(ctx, a, entitlement, false)
}

// membership adds the user to the entitlement's group or removes it, with
// PATCH on the group (RFC 7644 §3.5.2).
func (c *Conn) membership(ctx context.Context, a connector.Account, entitlement string, add bool) error {
	if err := checkName(a); err != nil {
		return err
	}
	gid, err := c.groupID(ctx, entitlement)
	if err != nil {
		return err
	}
	spc, err := c.config(ctx)
	if err != nil {
		return err
	}
	if !spc.Patch.Supported {
		return fmt.Errorf("the service provider does not support PATCH, which group membership needs")
	}
	u, err := c.findUser(ctx, a.Name)
	if err != nil {
		return err
	}
	if u == nil {
		if add {
			return fmt.Errorf("grant %s: account %q does not exist", entitlement, a.Name)
		}
		return nil
	}
	op := map[string]any{"op": "add", "path": "members", "value": []map[string]string{{"value": u.ID}}}
	if !add {
		op = map[string]any{"op": "remove", "path": "members[value eq " + quote(u.ID) + "]"}
	}
	err = c.do(ctx, http.MethodPatch, "/Groups/"+url.PathEscape(gid), patchOps(op), nil)
	if !add && (isStatus(err, http.StatusNotFound) || scimType(err, "noTarget")) {
		return nil
	}
	return err
}

func scimType(err error, t string) bool {
	var se *statusError
	return errors.As(err, &se) && strings.HasSuffix(se.detail, "("+t+")")
}

// SetCredential sets the user's password, if the provider supports
// password changes.
func (c *Conn) SetCredential(ctx context.Context, _ connector.Op, a connector.Account, cred connector.Credential) error {
	return c.setPassword(ctx, a, cred.Secret)
}

// RevokeCredential replaces the password with one nobody knows (SCIM has
// no way to remove one).
func (c *Conn) RevokeCredential(ctx context.Context, _ connector.Op, a connector.Account, _ string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	return c.setPassword(ctx, a, base64.RawURLEncoding.EncodeToString(b))
}

func (c *Conn) setPassword(ctx context.Context, a connector.Account, secret string) error {
	if err := checkName(a); err != nil {
		return err
	}
	spc, err := c.config(ctx)
	if err != nil {
		return err
	}
	if !spc.ChangePassword.Supported || !spc.Patch.Supported {
		return fmt.Errorf("the service provider does not support password changes (ServiceProviderConfig changePassword and patch); give this system no password credential rule")
	}
	u, err := c.findUser(ctx, a.Name)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("set password: account %q does not exist", a.Name)
	}
	return c.do(ctx, http.MethodPatch, "/Users/"+url.PathEscape(u.ID), patchOps(map[string]any{"op": "replace", "path": "password", "value": secret}), nil)
}

// ListAccounts pages through every User and every Group.
func (c *Conn) ListAccounts(ctx context.Context) ([]connector.AccountState, error) {
	var out []connector.AccountState
	byID := map[string]int{}
	var decodeErr error
	err := c.each(ctx, "/Users", "", func(raw json.RawMessage) bool {
		var u user
		if decodeErr = json.Unmarshal(raw, &u); decodeErr != nil {
			return false
		}
		byID[u.ID] = len(out)
		out = append(out, connector.AccountState{Name: u.UserName, Disabled: u.Active != nil && !*u.Active})
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, err
	}
	byGroupName, byGroupID := map[string][]string{}, map[string][]string{}
	for ent, tg := range c.targets {
		if tg.GroupID != "" {
			byGroupID[tg.GroupID] = append(byGroupID[tg.GroupID], ent)
		} else {
			byGroupName[tg.Group] = append(byGroupName[tg.Group], ent)
		}
	}
	err = c.each(ctx, "/Groups", "", func(raw json.RawMessage) bool {
		var g struct {
			ID          string
			DisplayName string
			Members     []struct{ Value string }
		}
		if decodeErr = json.Unmarshal(raw, &g); decodeErr != nil {
			return false
		}
		ents := append(slices.Clone(byGroupID[g.ID]), byGroupName[g.DisplayName]...)
		for _, m := range g.Members {
			i, ok := byID[m.Value]
			if !ok {
				continue
			}
			if len(ents) > 0 {
				out[i].Entitlements = append(out[i].Entitlements, ents...)
			} else {
				out[i].Other = append(out[i].Other, "group:"+g.DisplayName)
			}
		}
		return true
	})
	if err == nil {
		err = decodeErr
	}
	for i := range out {
		slices.Sort(out[i].Entitlements)
		out[i].Entitlements = slices.Compact(out[i].Entitlements)
		slices.Sort(out[i].Other)
	}
	return out, err
}

var (
	_ connector.CredentialSetter = (*Conn)(nil)
	_ connector.Lister           = (*Conn)(nil)
)
