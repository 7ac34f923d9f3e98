package engine

import (
	"context"
	"strings"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

// Reveal hands out a credential's secret, once. Only an admin, the owner of
// the credential's identity, or a human identity itself may reveal it; a
// second reveal is Gone. The secret is never logged; the audit record
// names who revealed which credential.
func (e *Engine) Reveal(ctx context.Context, p Principal, credentialID string) (string, *identity.Credential, error) {
	var secret string
	var cred *identity.Credential
	err := e.store.Update(ctx, func(tx store.Tx) error {
		c, err := tx.GetCredential(ctx, credentialID)
		if err != nil {
			return err
		}
		id, err := tx.GetIdentity(ctx, c.IdentityID)
		if err != nil {
			return err
		}
		owner := p.IdentityID != "" && (p.IdentityID == id.OwnerID || (p.IdentityID == id.ID && id.Kind == identity.Human))
		if p.Role != RoleAdmin && !owner {
			return identity.Errorf(identity.Forbidden, "only an admin or the owner of identity %s may reveal its credentials", id.ID)
		}
		sealed, err := tx.TakeSecret(ctx, credentialID)
		if err != nil {
			return err
		}
		plain, err := e.sealer.Open(sealed, []byte(credentialID))
		if err != nil {
			return err
		}
		secret, cred = string(plain), &c.Credential
		cred.Revealed = true
		return tx.AppendAudit(ctx, audit.New(e.now(), p.ID, "credential.revealed", id.ID, c.CaseID, map[string]any{"credential": c.ID, "prefix": c.Prefix}))
	})
	if err != nil {
		return "", nil, err
	}
	return secret, cred, nil
}

// Introspection is an RFC 7662 token introspection response.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Username  string `json:"username,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Iss       string `json:"iss,omitempty"`
	// jml extensions (RFC 7662 §2.2 allows more members).
	CredentialID string        `json:"credential_id,omitempty"`
	IdentityKind identity.Kind `json:"identity_kind,omitempty"`
	Owner        string        `json:"owner,omitempty"`
}

// Introspect says whether secret is an active jml-issued credential: it
// exists, is not revoked or expired, and its identity is active. Anything
// else, including a malformed secret, is {"active": false} and nothing more
// (RFC 7662 §2.2).
func (e *Engine) Introspect(ctx context.Context, secret string) (*Introspection, error) {
	inactive := &Introspection{Active: false}
	if !strings.HasPrefix(secret, vault.APIKeyPrefix) || len(secret) > 256 {
		e.metrics.introspections.WithLabelValues("false").Inc()
		return inactive, nil
	}
	var out *Introspection
	err := e.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.GetCredentialByHash(ctx, vault.Hash(secret))
		if store.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		now := e.now()
		if c.Status != identity.CredentialActive || (!c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)) {
			return nil
		}
		id, err := tx.GetIdentity(ctx, c.IdentityID)
		if err != nil {
			return err
		}
		if id.State != identity.Active {
			return nil
		}
		grants, err := tx.ListGrants(ctx, id.ID)
		if err != nil {
			return err
		}
		var scopes []string
		for _, g := range grants {
			if g.System == c.System && (g.ExpiresAt.IsZero() || now.Before(g.ExpiresAt)) {
				scopes = append(scopes, g.Entitlement)
			}
		}
		out = &Introspection{Active: true, Scope: strings.Join(scopes, " "), ClientID: c.Rule, Username: id.ExternalID, TokenType: c.Type,
			Iat: c.IssuedAt.Unix(), Sub: id.ID, Iss: "jml", CredentialID: c.ID, IdentityKind: id.Kind, Owner: id.OwnerID}
		if !c.ExpiresAt.IsZero() {
			out.Exp = c.ExpiresAt.Unix()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = inactive
	}
	e.metrics.introspections.WithLabelValues(boolLabel(out.Active)).Inc()
	return out, nil
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// IssueToken creates an API token for jml itself and returns its secret,
// shown once. Only its hash is stored.
func (e *Engine) IssueToken(ctx context.Context, p Principal, name string, role Role, identityID string) (string, *store.Token, error) {
	if !validRole(role) {
		return "", nil, identity.FieldError("role", "unknown role %q (want one of %v)", role, Roles)
	}
	if name == "" {
		name = string(role)
	}
	secret, err := vault.NewSecret(e.rand, vault.TokenPrefix)
	if err != nil {
		return "", nil, err
	}
	tk := &store.Token{ID: e.newID("tok_"), Name: name, Role: string(role), IdentityID: identityID, Hash: vault.Hash(secret), CreatedAt: e.now().UTC()}
	err = e.store.Update(ctx, func(tx store.Tx) error {
		if identityID != "" {
			if _, err := tx.GetIdentity(ctx, identityID); err != nil {
				return identity.FieldError("identity", "no identity %q", identityID)
			}
		}
		if err := tx.InsertToken(ctx, tk); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, audit.New(tk.CreatedAt, p.ID, "token.created", identityID, "", map[string]any{"token": tk.ID, "role": tk.Role, "name": name}))
	})
	if err != nil {
		return "", nil, err
	}
	return secret, tk, nil
}

// Bootstrap makes secret an admin token when the store has no token yet,
// so that JML_BOOTSTRAP_TOKEN opens a fresh install. With tokens present it
// does nothing: the variable cannot mint a second admin later.
func (e *Engine) Bootstrap(ctx context.Context, secret string) (bool, error) {
	if len(secret) < 16 {
		return false, identity.Errorf(identity.Invalid, "JML_BOOTSTRAP_TOKEN must be at least 16 characters")
	}
	created := false
	err := e.store.Update(ctx, func(tx store.Tx) error {
		created = false
		n, err := tx.CountTokens(ctx)
		if err != nil || n > 0 {
			return err
		}
		if _, err := tx.GetTokenByHash(ctx, vault.Hash(secret)); err == nil {
			return nil
		}
		tk := &store.Token{ID: e.newID("tok_"), Name: "bootstrap", Role: string(RoleAdmin), Hash: vault.Hash(secret), CreatedAt: e.now().UTC()}
		if err := tx.InsertToken(ctx, tk); err != nil {
			return err
		}
		created = true
		return tx.AppendAudit(ctx, audit.New(tk.CreatedAt, System.ID, "token.bootstrapped", "", "", map[string]any{"token": tk.ID, "role": tk.Role}))
	})
	return created, err
}

// Authenticate resolves a bearer token to its principal.
func (e *Engine) Authenticate(ctx context.Context, secret string) (Principal, error) {
	unauth := identity.Errorf(identity.Unauthorized, "unknown or revoked API token")
	if secret == "" || len(secret) > 256 {
		return Principal{}, unauth
	}
	var p Principal
	err := e.store.View(ctx, func(tx store.Tx) error {
		tk, err := tx.GetTokenByHash(ctx, vault.Hash(secret))
		if store.IsNotFound(err) {
			return unauth
		}
		if err != nil {
			return err
		}
		if !tk.RevokedAt.IsZero() {
			return unauth
		}
		p = Principal{ID: tk.ID, Name: tk.Name, Role: Role(tk.Role), IdentityID: tk.IdentityID}
		return nil
	})
	return p, err
}

func validRole(r Role) bool {
	for _, v := range Roles {
		if r == v {
			return true
		}
	}
	return false
}

// CheckMasterKey records the vault key's check value in a database that has
// none, and otherwise refuses to run with a key that is not the one the
// database's secrets were sealed with.
func (e *Engine) CheckMasterKey(ctx context.Context, key []byte) error {
	check := vault.KeyCheck(key)
	return e.store.Update(ctx, func(tx store.Tx) error {
		stored, err := tx.GetMeta(ctx, "vault_key_check")
		if err != nil {
			return err
		}
		switch stored {
		case "":
			return tx.PutMeta(ctx, "vault_key_check", check)
		case check:
			return nil
		}
		return identity.Errorf(identity.Invalid, "the vault master key (JML_MASTER_KEY or the key file) is not the key this database was first used with; secrets sealed with the other key could not be revealed. Use the original key")
	})
}

// RevokeToken revokes an API token at once; the next request with it is
// refused. Revoking a revoked token is not an error.
func (e *Engine) RevokeToken(ctx context.Context, p Principal, id string) error {
	return e.store.Update(ctx, func(tx store.Tx) error {
		ok, err := tx.RevokeToken(ctx, id, e.now().UTC())
		if err != nil || !ok {
			return err
		}
		return tx.AppendAudit(ctx, audit.New(e.now(), p.ID, "token.revoked", "", "", map[string]any{"token": id}))
	})
}

// ListTokens returns every API token, without hashes.
func (e *Engine) ListTokens(ctx context.Context) ([]store.Token, error) {
	var out []store.Token
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListTokens(ctx)
		return err
	})
	for i := range out {
		out[i].Hash = nil
	}
	if out == nil {
		out = []store.Token{}
	}
	return out, err
}
