package sqlstore

// Tx's part for credentials.

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

const credCols = "id, identity_id, rule, system, type, status, marker, fingerprint, hash, sealed, revealed, issued_at, expires_at, revoked_at, case_id"

func scanCred(scan func(...any) error) (*store.StoredCredential, error) {
	var c store.StoredCredential
	var status string
	var revealed int
	var issued, expires, revoked int64
	if err := scan(&c.ID, &c.IdentityID, &c.Rule, &c.System, &c.Type, &status, &c.Marker, &c.Fingerprint, &c.Hash, &c.Sealed, &revealed, &issued, &expires, &revoked, &c.CaseID); err != nil {
		return nil, err
	}
	c.Status = identity.CredentialStatus(status)
	c.Revealed = revealed != 0
	c.IssuedAt, c.ExpiresAt, c.RevokedAt = fromMicros(issued), fromMicros(expires), fromMicros(revoked)
	return &c, nil
}

func (t *Tx) InsertCredential(ctx context.Context, c *store.StoredCredential) error {
	err := t.write(ctx, "INSERT INTO credentials ("+credCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.IdentityID, c.Rule, c.System, c.Type, string(c.Status), c.Marker, c.Fingerprint, nullBytes(c.Hash), nullBytes(c.Sealed),
		boolInt(c.Revealed), micros(c.IssuedAt), micros(c.ExpiresAt), micros(c.RevokedAt), c.CaseID)
	if err != nil {
		return fmt.Errorf("insert credential: %w", err)
	}
	return nil
}

func (t *Tx) GetCredential(ctx context.Context, id string) (*store.StoredCredential, error) {
	return one(ctx, t.c, "credential", id, scanCred, "SELECT "+credCols+" FROM credentials WHERE id = ?", id)
}

func (t *Tx) GetCredentialByHash(ctx context.Context, hash []byte) (*store.StoredCredential, error) {
	return one(ctx, t.c, "credential", "by hash", scanCred, "SELECT "+credCols+" FROM credentials WHERE hash = ?", hash)
}

func (t *Tx) ListCredentials(ctx context.Context, identityID string, activeOnly bool) ([]identity.Credential, error) {
	q := "SELECT " + credCols + " FROM credentials WHERE identity_id = ?"
	args := []any{identityID}
	if activeOnly {
		q += " AND status = ?"
		args = append(args, string(identity.CredentialActive))
	}
	return queryAll(ctx, t.c, func(scan func(...any) error) (identity.Credential, error) {
		c, err := scanCred(scan)
		if err != nil {
			return identity.Credential{}, err
		}
		return c.Credential, nil
	}, q+" ORDER BY issued_at, id", args...)
}

func (t *Tx) RevokeCredential(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := t.c.Exec(ctx, "UPDATE credentials SET status = ?, revoked_at = ?, sealed = NULL WHERE id = ? AND status = ?",
		string(identity.CredentialRevoked), micros(at), id, string(identity.CredentialActive))
	return n > 0, err
}

func (t *Tx) RevokeSystemCredentials(ctx context.Context, identityID, system string, at time.Time) ([]string, error) {
	return t.strings(ctx, "UPDATE credentials SET status = ?, revoked_at = ?, sealed = NULL WHERE identity_id = ? AND system = ? AND status = ? RETURNING id",
		string(identity.CredentialRevoked), micros(at), identityID, system, string(identity.CredentialActive))
}

// strings runs q and returns its one text column, row by row.
func (t *Tx) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	return queryAll(ctx, t.c, func(scan func(...any) error) (string, error) {
		var v string
		return v, scan(&v)
	}, q, args...)
}

func (t *Tx) TakeSecret(ctx context.Context, id string) ([]byte, error) {
	// The conditional UPDATE is the once-only gate: it takes the row lock
	// on PostgreSQL, so of two concurrent reveals exactly one sees n == 1.
	n, err := t.c.Exec(ctx, "UPDATE credentials SET revealed = 1 WHERE id = ? AND revealed = 0 AND status = ? AND sealed IS NOT NULL", id, string(identity.CredentialActive))
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if _, err := t.GetCredential(ctx, id); err != nil {
			return nil, err
		}
		return nil, identity.Errorf(identity.Gone, "the secret of credential %q was already revealed or the credential is revoked", id)
	}
	var sealed []byte
	if err := t.row(ctx, []any{&sealed}, "SELECT sealed FROM credentials WHERE id = ?", id); err != nil {
		return nil, err
	}
	if _, err := t.c.Exec(ctx, "UPDATE credentials SET sealed = NULL WHERE id = ?", id); err != nil {
		return nil, err
	}
	return sealed, nil
}
