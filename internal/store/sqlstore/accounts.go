package sqlstore

// Tx's part for accounts.

import (
	"context"

	"github.com/jml-dev/jml/internal/identity"
)

func (t *Tx) ListAccounts(ctx context.Context, identityID string) ([]identity.Account, error) {
	return queryAll(ctx, t.c, func(scan func(...any) error) (identity.Account, error) {
		a := identity.Account{IdentityID: identityID}
		var status string
		var updated int64
		err := scan(&a.System, &status, &updated)
		a.Status, a.UpdatedAt = identity.AccountStatus(status), fromMicros(updated)
		return a, err
	}, "SELECT system, status, updated_at FROM accounts WHERE identity_id = ? ORDER BY system", identityID)
}

func (t *Tx) PutAccount(ctx context.Context, a *identity.Account) error {
	err := t.write(ctx, `INSERT INTO accounts (identity_id, system, status, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (identity_id, system) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at`,
		a.IdentityID, a.System, string(a.Status), micros(a.UpdatedAt))
	return err
}
