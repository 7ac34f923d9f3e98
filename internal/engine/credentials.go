package engine

import (
	"context"
	"strings"
	"unicode"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

// Reveal hands out a credential's secret, once. Only an admin, or a member
// token of the active owner of the credential's identity or of the human
// identity itself, may reveal it; a second reveal is Gone. The secret is never logged; the audit record
// names who revealed which credential.
func (e *Engine) Reveal(ctx context.Context, p Principal, credentialID string) (string, *identity.Credential, error) {
	if e.sealer == nil {
		return "", nil, identity.Errorf(identity.Unavailable, "this process has no vault key: reveal through jml serve")
	}
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
		switch ReachOf(p.Role, PermReveal) {
		case Anywhere:
		case Own:
			if !p.Sees(id) {
				// As for a credential that does not exist: no ID of an
				// identity this token may not read is confirmed.
				return identity.Errorf(identity.NotFound, "credential %q not found", credentialID)
			}
			if !p.Holds(id) {
				return identity.Errorf(identity.Forbidden, "only an admin, the owner of the identity or the person themself may reveal its credentials (a manager reads a report's identity, not its secrets)")
			}
			// The holder's token authenticated while they were active;
			// read it again here, in the transaction that hands out the
			// secret.
			me, err := tx.GetIdentity(ctx, p.IdentityID)
			if err != nil {
				return err
			}
			if me.State != identity.Active {
				return identity.Errorf(identity.Forbidden, "identity %s is %s: only an active owner may reveal a credential", me.ID, me.State)
			}
		default:
			return identity.Errorf(identity.Forbidden, "role %s may not reveal credentials (a person reveals with their member token)", p.Role)
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
		return tx.AppendAudit(ctx, auditBy(e.Now(), p, "credential.revealed", id.ID, c.CaseID, map[string]any{"credential": c.ID, "fingerprint": c.Fingerprint}))
	})
	if err != nil {
		return "", nil, err
	}
	return secret, cred, nil
}

// Introspection is an RFC 7662 token introspection response. By default it
// carries what a resource server needs to decide (active, scope, exp, iat,
// sub, client_id, token_type); the members marked extra are added only when
// the configuration names them (IntrospectionExtras).
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Sub       string `json:"sub,omitempty"`
	// Extra: the identity's external ID, jml's issuer name, and jml
	// extensions (RFC 7662 §2.2 allows more members).
	Username     string        `json:"username,omitempty"`
	Iss          string        `json:"iss,omitempty"`
	CredentialID string        `json:"credential_id,omitempty"`
	IdentityKind identity.Kind `json:"identity_kind,omitempty"`
	Owner        string        `json:"owner,omitempty"`
}

// IntrospectionExtras names the members an introspection answer may carry
// when configured to (engine.Config.IntrospectionClaims).
var IntrospectionExtras = []string{"username", "iss", "credential_id", "identity_kind", "owner"}

// Introspect says whether secret is an active jml-issued credential: it
// exists, is not revoked or expired, and its identity is active. Anything
// else, including a malformed secret, is {"active": false} and nothing more
// (RFC 7662 §2.2).
//
// The caller must be authorised to introspect (RFC 7662 §2.1: a protected
// resource's token, PermIntrospect); package httpapi checks it.
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
		now := e.Now()
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
		out = &Introspection{Active: true, Scope: strings.Join(scopes, " "), ClientID: c.Rule, TokenType: c.Type, Iat: c.IssuedAt.Unix(), Sub: id.ID}
		for _, claim := range e.claims {
			switch claim {
			case "username":
				out.Username = id.ExternalID
			case "iss":
				out.Iss = "jml"
			case "credential_id":
				out.CredentialID = c.ID
			case "identity_kind":
				out.IdentityKind = id.Kind
			case "owner":
				out.Owner = id.OwnerID
			}
		}
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

// TokenSpec is what an API token is made for.
type TokenSpec struct {
	Name string
	Role Role
	// Source binds a source token to the one source it submits events of
	// (required for role source, refused for the others).
	Source string
	// Identity binds the token to an identity, by jml ID or as
	// SOURCE/EXTERNAL_ID (required for member and approver tokens, which
	// stand for a person).
	Identity string
}

// IssueToken creates an API token for jml itself and returns its secret,
// shown once. Only its hash is stored. A token bound to an identity works
// only while that identity is active.
func (e *Engine) IssueToken(ctx context.Context, p Principal, spec TokenSpec) (string, *store.Token, error) {
	role := spec.Role
	if !validRole(role) {
		return "", nil, identity.FieldError("role", "unknown role %q (want one of %v)", role, Roles)
	}
	switch {
	case role == RoleSource && spec.Source == "":
		return "", nil, identity.FieldError("source", "a source token is bound to the one source whose events it submits: give it (--source hr, or \"source\": \"hr\")")
	case role != RoleSource && spec.Source != "":
		return "", nil, identity.FieldError("source", "only a source token has a source (this one is %s)", role)
	case (role == RoleMember || role == RoleApprover) && spec.Identity == "":
		return "", nil, identity.FieldError("identity", "%s tokens stand for a person: give the person's identity (--identity ID or SOURCE/EXTERNAL_ID)", role)
	}
	if spec.Source != "" {
		if err := identity.ValidName("source", spec.Source); err != nil {
			return "", nil, err
		}
	}
	if err := tokenName(spec.Name); err != nil {
		return "", nil, err
	}
	name := spec.Name
	if name == "" {
		name = string(role)
		if spec.Source != "" {
			name = spec.Source
		}
	}
	secret, err := vault.NewSecret(e.rand, vault.TokenPrefix)
	if err != nil {
		return "", nil, err
	}
	tk := &store.Token{ID: e.newID("tok_"), Name: name, Role: string(role), Source: spec.Source, Hash: vault.Hash(secret), CreatedAt: e.Now().UTC()}
	err = e.store.Update(ctx, func(tx store.Tx) error {
		if spec.Identity != "" {
			id, err := lookupIdentity(ctx, tx, spec.Identity)
			if err != nil {
				return err
			}
			if id.State != identity.Active {
				return identity.FieldError("identity", "%s (%s/%s) is %s: a token bound to it would not work", id.ID, id.Source, id.ExternalID, id.State)
			}
			if (role == RoleApprover || role == RoleMember) && id.Kind != identity.Human {
				return identity.FieldError("identity", "%s is of kind %s: %s tokens stand for a person, so they are bound to a human identity", id.ID, id.Kind, role)
			}
			tk.IdentityID = id.ID
		}
		if err := tx.InsertToken(ctx, tk); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, auditBy(tk.CreatedAt, p, "token.created", tk.IdentityID, "", map[string]any{"token": tk.ID, "role": tk.Role, "name": name, "source": tk.Source}))
	})
	if err != nil {
		return "", nil, err
	}
	return secret, tk, nil
}

// tokenName checks a token's label: at most 64 printable characters, no
// control characters (a name is printed in tables and logs as it is).
func tokenName(name string) error {
	if len(name) > 64 {
		return identity.FieldError("name", "is longer than 64 bytes")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return identity.FieldError("name", "holds a control or non-printing character (%U)", r)
		}
	}
	return nil
}

// lookupIdentity finds an identity by jml ID or as SOURCE/EXTERNAL_ID.
func lookupIdentity(ctx context.Context, tx store.Tx, ref string) (*identity.Identity, error) {
	id, err := tx.GetIdentity(ctx, ref)
	if store.IsNotFound(err) {
		if src, ext, ok := strings.Cut(ref, "/"); ok {
			id, err = tx.GetIdentityByExternalID(ctx, src, ext)
		}
	}
	if store.IsNotFound(err) {
		return nil, identity.FieldError("identity", "no identity %q (give a jml ID or SOURCE/EXTERNAL_ID)", ref)
	}
	return id, err
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
		tk := &store.Token{ID: e.newID("tok_"), Name: "bootstrap", Role: string(RoleAdmin), Hash: vault.Hash(secret), CreatedAt: e.Now().UTC()}
		if err := tx.InsertToken(ctx, tk); err != nil {
			return err
		}
		created = true
		return tx.AppendAudit(ctx, audit.New(tk.CreatedAt, System.ID, "token.bootstrapped", "", "", map[string]any{"token": tk.ID, "role": tk.Role}))
	})
	return created, err
}

// Authenticate resolves a bearer token to its principal. A token bound
// to an identity authenticates only while that identity is active: a
// suspended person's tokens stop working and work again on resume, a
// departed person's were revoked when the leaver was accepted. The
// identity's state comes with the token, in the same query.
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
		if tk.IdentityID != "" && tk.IdentityState != identity.Active {
			state := tk.IdentityState
			if state == "" {
				state = "gone"
			}
			return identity.Errorf(identity.Unauthorized, "this API token is bound to identity %s, which is %s: a token bound to an identity works only while it is active", tk.IdentityID, state)
		}
		p = Principal{ID: tk.ID, Name: tk.Name, Role: Role(tk.Role), Source: tk.Source, IdentityID: tk.IdentityID, Token: true}
		return nil
	})
	return p, err
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
		ok, err := tx.RevokeToken(ctx, id, e.Now().UTC())
		if err != nil || !ok {
			return err
		}
		return tx.AppendAudit(ctx, auditBy(e.Now(), p, "token.revoked", "", "", map[string]any{"token": id}))
	})
}

// ListTokens returns every API token, without hashes, to a principal
// that manages tokens.
func (e *Engine) ListTokens(ctx context.Context, p Principal) ([]store.Token, error) {
	if err := mayUse(p, PermTokens); err != nil {
		return nil, err
	}
	var out []store.Token
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListTokens(ctx)
		return err
	})
	for i := range out {
		out[i].Hash = nil
	}
	return nonNil(out), err
}
