package engine

import (
	"context"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/store"
)

// VerifyAudit checks the whole audit chain, once what was written before
// it began is sealed: every seal and record in chain order, then the head,
// which catches a truncated tail. It returns how many records verified
// and, for a broken chain, an *audit.BadRecordError naming the first bad
// record.
func (e *Engine) VerifyAudit(ctx context.Context, p Principal) (int64, error) {
	if err := mayUse(p, PermAudit); err != nil {
		return 0, err
	}
	if err := e.store.SealAudit(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		n, err = audit.Verify(ctx, tx)
		return err
	})
	return n, err
}
