package sqlstore

// Tx's part for API tokens.

import (
	"context"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

func (t *Tx) InsertToken(ctx context.Context, tk *store.Token) error {
	err := t.write(ctx, "INSERT INTO api_tokens (id, name, role, source, identity_id, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		tk.ID, tk.Name, tk.Role, tk.Source, tk.IdentityID, tk.Hash, micros(tk.CreatedAt), micros(tk.RevokedAt))
	return err
}

// tokenQuery reads tokens with their bound identity's state: the request
// path authenticates in this one query.
const tokenQuery = "SELECT t.id, t.name, t.role, t.source, t.identity_id, t.hash, t.created_at, t.revoked_at, COALESCE(i.state, '') " +
	"FROM api_tokens t LEFT JOIN identities i ON i.id = t.identity_id AND t.identity_id <> ''"

func scanToken(scan func(...any) error) (store.Token, error) {
	var tk store.Token
	var created, revoked int64
	var state string
	err := scan(&tk.ID, &tk.Name, &tk.Role, &tk.Source, &tk.IdentityID, &tk.Hash, &created, &revoked, &state)
	tk.CreatedAt, tk.RevokedAt, tk.IdentityState = fromMicros(created), fromMicros(revoked), identity.State(state)
	return tk, err
}

func (t *Tx) getToken(ctx context.Context, what, where string, arg any) (*store.Token, error) {
	return one(ctx, t.c, "token", what, func(scan func(...any) error) (*store.Token, error) {
		tk, err := scanToken(scan)
		return &tk, err
	}, tokenQuery+" WHERE "+where, arg)
}

func (t *Tx) GetTokenByHash(ctx context.Context, hash []byte) (*store.Token, error) {
	return t.getToken(ctx, "by hash", "t.hash = ?", hash)
}

func (t *Tx) GetToken(ctx context.Context, id string) (*store.Token, error) {
	return t.getToken(ctx, id, "t.id = ?", id)
}

func (t *Tx) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := t.row(ctx, []any{&n}, "SELECT COUNT(*) FROM api_tokens WHERE revoked_at = 0")
	return n, err
}

func (t *Tx) ListTokens(ctx context.Context) ([]store.Token, error) {
	return queryAll(ctx, t.c, scanToken, tokenQuery+" ORDER BY t.created_at, t.id")
}

func (t *Tx) RevokeIdentityTokens(ctx context.Context, identityID string, at time.Time) ([]string, error) {
	if identityID == "" {
		return nil, nil
	}
	return t.strings(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE identity_id = ? AND revoked_at = 0 RETURNING id", micros(at), identityID)
}

func (t *Tx) RevokeToken(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := t.c.Exec(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0", micros(at), id)
	if err != nil || n > 0 {
		return n > 0, err
	}
	var exists int
	if err := t.row(ctx, []any{&exists}, "SELECT COUNT(*) FROM api_tokens WHERE id = ?", id); err != nil {
		return false, err
	}
	if exists == 0 {
		return false, notFound("token", id)
	}
	return false, nil
}
