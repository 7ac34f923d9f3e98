package engine

import (
	"context"
	"errors"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

var errPreview = errors.New("preview: roll back")

// Preview shows what Submit would do with ev, without doing it: it runs the
// same code in a transaction that it always rolls back, so the preview and
// the real thing cannot drift apart. The case it returns was never stored.
func (e *Engine) Preview(ctx context.Context, p Principal, ev identity.Event) (*Result, *store.Case, error) {
	if err := ev.Validate(); err != nil {
		return nil, nil, err
	}
	var res *Result
	var c *store.Case
	err := e.store.Update(ctx, func(tx store.Tx) error {
		var err error
		res, c, err = e.accept(ctx, tx, p, ev, &acceptCounters{})
		if err != nil {
			return err
		}
		if res.CaseID != "" {
			if c, err = tx.GetCase(ctx, res.CaseID); err != nil {
				return err
			}
		}
		return errPreview
	})
	if !errors.Is(err, errPreview) {
		return nil, nil, err
	}
	return res, c, nil
}
