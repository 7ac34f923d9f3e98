package sqlstore

// Tx's part for grants.

import (
	"context"
	"time"

	"github.com/jml-dev/jml/internal/identity"
)

const grantCols = "identity_id, entitlement, system, reason, case_id, granted_at, expires_at, approved_by"

func scanGrant(scan func(...any) error) (identity.Grant, error) {
	var g identity.Grant
	var granted, expires int64
	err := scan(&g.IdentityID, &g.Entitlement, &g.System, &g.Reason, &g.CaseID, &granted, &expires, &g.ApprovedBy)
	g.GrantedAt, g.ExpiresAt = fromMicros(granted), fromMicros(expires)
	return g, err
}

func (t *Tx) ListGrants(ctx context.Context, identityID string) ([]identity.Grant, error) {
	return queryAll(ctx, t.c, scanGrant, "SELECT "+grantCols+" FROM grants WHERE identity_id = ? ORDER BY entitlement", identityID)
}

// The expiry queries repeat the predicate of the partial index
// grants_expiring (migration 018) word for word, so that every planner
// uses it.

func (t *Tx) ListExpiringGrants(ctx context.Context, until time.Time, limit int) ([]identity.Grant, error) {
	return queryAll(ctx, t.c, scanGrant, "SELECT "+grantCols+" FROM grants WHERE expires_at > 0 AND expires_at <= ? ORDER BY expires_at, identity_id, entitlement LIMIT ?",
		micros(until), limit)
}

func (t *Tx) CountExpiringGrants(ctx context.Context, until time.Time) (int, error) {
	var n int
	err := QueryRow(ctx, t.c, []any{&n}, "SELECT COUNT(*) FROM grants WHERE expires_at > 0 AND expires_at <= ?", micros(until))
	return n, err
}

const insertGrant = `INSERT INTO grants (identity_id, entitlement, system, reason, case_id, granted_at, expires_at, approved_by)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

func (t *Tx) PutGrant(ctx context.Context, g *identity.Grant) error {
	return t.write(ctx, insertGrant+`
ON CONFLICT (identity_id, entitlement) DO UPDATE SET system = excluded.system, reason = excluded.reason, case_id = excluded.case_id,
  granted_at = excluded.granted_at, expires_at = excluded.expires_at, approved_by = excluded.approved_by`,
		g.IdentityID, g.Entitlement, g.System, g.Reason, g.CaseID, micros(g.GrantedAt), micros(g.ExpiresAt), g.ApprovedBy)
}

func (t *Tx) InsertGrant(ctx context.Context, g *identity.Grant) error {
	return t.write(ctx, insertGrant, g.IdentityID, g.Entitlement, g.System, g.Reason, g.CaseID, micros(g.GrantedAt), micros(g.ExpiresAt), g.ApprovedBy)
}

func (t *Tx) DeleteGrant(ctx context.Context, identityID, entitlement string) (bool, error) {
	n, err := t.c.Exec(ctx, "DELETE FROM grants WHERE identity_id = ? AND entitlement = ?", identityID, entitlement)
	return n > 0, err
}
