// Package webhook is the connector for systems without one: each step is
// POSTed as JSON to the system's URL, signed with HMAC-SHA256 over the
// timestamp and the body, and carrying the step's idempotency key. A 2xx
// answer means done, 409 means already done; anything else is an error
// and the step is retried.
//
// Requests are signed as package signature says (X-JML-Timestamp,
// X-JML-Signature: HMAC-SHA256 over timestamp and body); receivers check
// that with signature.Verify (or its equivalent), refuse a timestamp
// outside their replay window, and deduplicate on Idempotency-Key.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/signature"
)

// Type is the connector type name in a policy.
const Type = "webhook"

// HeaderIdempotency carries the step's idempotency key.
const HeaderIdempotency = "Idempotency-Key"

type settings struct {
	URL     string `yaml:"url"`
	Secret  string `yaml:"secret"`  // env:NAME or file:PATH
	Timeout string `yaml:"timeout"` // default 10s
}

// Conn is a webhook connector.
type Conn struct {
	system  string
	url     string
	secret  []byte
	client  *http.Client
	targets map[string]map[string]any
	now     func() time.Time
}

// Open validates cfg and returns a connector.
func Open(_ context.Context, cfg connector.Config) (connector.Connector, error) {
	var st settings
	if err := connector.Decode(cfg.Settings, &st); err != nil {
		return nil, cfg.Errorf("config: %v", err)
	}
	if err := connector.CheckHTTPURL(st.URL); err != nil {
		return nil, cfg.Errorf("url: %v", err)
	}
	timeout := 10 * time.Second
	if st.Timeout != "" {
		var err error
		if timeout, err = time.ParseDuration(st.Timeout); err != nil || timeout <= 0 {
			return nil, cfg.Errorf("timeout: %q is not a positive duration", st.Timeout)
		}
	}
	if err := cfg.CheckRef("secret", st.Secret); err != nil {
		return nil, err
	}
	if cfg.CheckOnly {
		return nil, nil
	}
	secret, err := cfg.Secret("secret", st.Secret)
	if err != nil {
		return nil, err
	}
	if len(secret) < 16 {
		return nil, cfg.Errorf("secret: at least 16 bytes, for HMAC-SHA256")
	}
	return &Conn{system: cfg.System, url: st.URL, secret: []byte(secret), targets: cfg.Targets, now: time.Now,
		client: &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// Step is the JSON body of one request.
type Step struct {
	ID          string         `json:"id"` // the idempotency key
	Case        string         `json:"case"`
	System      string         `json:"system"`
	Action      string         `json:"action"`
	Account     Account        `json:"account"`
	Entitlement string         `json:"entitlement,omitempty"`
	Target      map[string]any `json:"target,omitempty"`
	Credential  *Credential    `json:"credential,omitempty"`
	SentAt      time.Time      `json:"sentAt"`
}

// Account is the account a step is about.
type Account struct {
	Name       string         `json:"name"`
	IdentityID string         `json:"identityId"`
	Kind       identity.Kind  `json:"kind,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Credential is a credential to install (the secret is present) or to
// revoke (only the ID).
type Credential struct {
	ID        string     `json:"id"`
	Type      string     `json:"type,omitempty"`
	Secret    string     `json:"secret,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// Actions.
const (
	ActionEnsureAccount    = "ensure_account"
	ActionDisableAccount   = "disable_account"
	ActionDeleteAccount    = "delete_account"
	ActionGrant            = "grant"
	ActionRevoke           = "revoke"
	ActionSetCredential    = "set_credential"
	ActionRevokeCredential = "revoke_credential"
)

func (c *Conn) send(ctx context.Context, op connector.Op, st Step) error {
	st.ID, st.Case, st.System, st.SentAt = op.IdempotencyKey, op.CaseID, c.system, c.now().UTC()
	body, err := json.Marshal(st)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	signature.SetHeaders(req.Header, c.secret, body, st.SentAt)
	req.Header.Set(HeaderIdempotency, op.IdempotencyKey)
	resp, err := c.client.Do(req)
	if err != nil {
		// The URL may carry a token in its query; say only where.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", st.Action, c.host(), err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusConflict:
		return nil
	}
	msg := fmt.Sprintf("%s %s: HTTP %d", st.Action, c.host(), resp.StatusCode)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		msg += " (Retry-After " + ra + ")"
	}
	if s := strings.TrimSpace(string(snippet)); s != "" {
		msg += ": " + s
	}
	return errors.New(msg)
}

func (c *Conn) host() string {
	u, _ := url.Parse(c.url)
	return u.Host
}

func account(a connector.Account) Account {
	return Account{Name: a.Name, IdentityID: a.IdentityID, Kind: a.Kind, Attributes: a.Attributes}
}

func (c *Conn) EnsureAccount(ctx context.Context, op connector.Op, a connector.Account) error {
	return c.send(ctx, op, Step{Action: ActionEnsureAccount, Account: account(a)})
}

func (c *Conn) DisableAccount(ctx context.Context, op connector.Op, a connector.Account) error {
	return c.send(ctx, op, Step{Action: ActionDisableAccount, Account: account(a)})
}

func (c *Conn) DeleteAccount(ctx context.Context, op connector.Op, a connector.Account) error {
	return c.send(ctx, op, Step{Action: ActionDeleteAccount, Account: account(a)})
}

func (c *Conn) Grant(ctx context.Context, op connector.Op, a connector.Account, entitlement string) error {
	return c.send(ctx, op, Step{Action: ActionGrant, Account: account(a), Entitlement: entitlement, Target: c.targets[entitlement]})
}

func (c *Conn) Revoke(ctx context.Context, op connector.Op, a connector.Account, entitlement string) error {
	return c.send(ctx, op, Step{Action: ActionRevoke, Account: account(a), Entitlement: entitlement, Target: c.targets[entitlement]})
}

func (c *Conn) SetCredential(ctx context.Context, op connector.Op, a connector.Account, cred connector.Credential) error {
	wc := &Credential{ID: cred.ID, Type: cred.Type, Secret: cred.Secret}
	if !cred.ExpiresAt.IsZero() {
		t := cred.ExpiresAt.UTC()
		wc.ExpiresAt = &t
	}
	return c.send(ctx, op, Step{Action: ActionSetCredential, Account: account(a), Credential: wc})
}

func (c *Conn) RevokeCredential(ctx context.Context, op connector.Op, a connector.Account, credentialID string) error {
	return c.send(ctx, op, Step{Action: ActionRevokeCredential, Account: account(a), Credential: &Credential{ID: credentialID}})
}

var _ connector.CredentialSetter = (*Conn)(nil)
