package engine

// The end of a rotation overlap: a system that rotates with overlap
// (connector.OverlapRotator) keeps the old secret working for a while
// after a new one is issued; this timer removes it.

import (
	"context"
	"fmt"
	"sync"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
	"github.com/jml-dev/jml/internal/store"
)

// RetireCredentialsArgs ends a rotation overlap: every secret of the
// identity's account in System but its current credential of Rule is
// removed.
type RetireCredentialsArgs struct {
	IdentityID string `json:"identityId"`
	System     string `json:"system"`
	Rule       string `json:"rule"`
}

func (RetireCredentialsArgs) Kind() string { return "jml.retire_credentials" }

// registerOverlap declares the timer that ends a rotation overlap.
func (e *Engine) registerOverlap(r *jobs.Registry) {
	jobs.AddFunc(r, "engine/overlap.go", "removes every secret but the current one when a rotation overlap ends", func(ctx context.Context, job *river.Job[RetireCredentialsArgs]) error {
		return e.RetireCredentials(ctx, job.Args)
	})
}

// RetireCredentials ends a rotation overlap (the jml.retire_credentials
// job): it keeps the identity's active credential of the rule (by
// fingerprint) and removes every other secret of the account. If none is
// active any more (revoked meanwhile), it removes them all.
func (e *Engine) RetireCredentials(ctx context.Context, a RetireCredentialsArgs) error {
	// Under the (identity, system) lock, so that no issue or rotation of
	// the account is between its call and its record while the secret to
	// keep is read.
	calls := &sync.WaitGroup{}
	release, err := e.lockAccess(ctx, a.IdentityID+"/"+a.System, calls)
	if err != nil {
		return err
	}
	defer release()
	var id *identity.Identity
	var keep string
	err = e.store.View(ctx, func(tx store.Tx) error {
		var err error
		if id, err = tx.GetIdentity(ctx, a.IdentityID); err != nil {
			return err
		}
		creds, err := tx.ListCredentials(ctx, a.IdentityID, true)
		if err != nil {
			return err
		}
		for _, c := range creds {
			if c.System == a.System && c.Rule == a.Rule {
				keep = c.Fingerprint // the newest active one wins
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	ov, ok := e.conn(a.System).(connector.OverlapRotator)
	if !ok {
		return fmt.Errorf("system %s no longer rotates with overlap", a.System)
	}
	op := connector.Op{IdempotencyKey: "retire/" + a.IdentityID + "/" + a.System + "/" + a.Rule}
	if err := e.call(ctx, a.System, calls, func(ctx context.Context) error {
		return ov.RetireCredentials(ctx, op, connector.Account{IdentityID: id.ID, Name: id.ExternalID, Kind: id.Kind, Attributes: id.Attributes}, keep)
	}); err != nil {
		return err
	}
	return e.store.Update(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, audit.New(e.Now().UTC(), System.ID, "credentials.retired", id.ID, "", map[string]any{"system": a.System, "rule": a.Rule, "kept": keep}))
	})
}
