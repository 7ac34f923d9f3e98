package sqlstore

// Tx's part for accounts.

import (
	"context"

	"github.com/jml-dev/jml/internal/identity"
)

func (t *Tx) ListAccounts(ctx context.Context, identityID string) ([]identity.Account, error) {
	rows, err := t.c.Query(ctx, "SELECT system, status, updated_at FROM accounts WHERE identity_id = ? ORDER BY system", identityID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []identity.Account
	for rows.Next() {
		a := identity.Account{IdentityID: identityID}
		var status string
		var updated int64
		if err := rows.Scan(&a.System, &status, &updated); err != nil {
			return nil, err
		}
		a.Status, a.UpdatedAt = identity.AccountStatus(status), fromMicros(updated)
		out = append(out, a)
	}
	return out, rows.Err()
}

func (t *Tx) PutAccount(ctx context.Context, a *identity.Account) error {
	err := t.write(ctx, `INSERT INTO accounts (identity_id, system, status, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (identity_id, system) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at`,
		a.IdentityID, a.System, string(a.Status), micros(a.UpdatedAt))
	return err
}
