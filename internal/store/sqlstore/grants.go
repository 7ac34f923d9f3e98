package sqlstore

// Tx's part for grants.

import (
	"context"

	"github.com/jml-dev/jml/internal/identity"
)

func (t *Tx) ListGrants(ctx context.Context, identityID string) ([]identity.Grant, error) {
	return queryAll(ctx, t.c, func(scan func(...any) error) (identity.Grant, error) {
		g := identity.Grant{IdentityID: identityID}
		var granted, expires int64
		err := scan(&g.Entitlement, &g.System, &g.Reason, &g.CaseID, &granted, &expires, &g.ApprovedBy)
		g.GrantedAt, g.ExpiresAt = fromMicros(granted), fromMicros(expires)
		return g, err
	}, "SELECT entitlement, system, reason, case_id, granted_at, expires_at, approved_by FROM grants WHERE identity_id = ? ORDER BY entitlement", identityID)
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
