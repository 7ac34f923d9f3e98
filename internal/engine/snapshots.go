package engine

import (
	"context"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// This file holds the read model of the snapshots file-fed sources keep:
// the last one of a source that was applied (Import stores it), which the
// next import of the source is compared with.

// Snapshot is the last snapshot of source that was applied, nil when
// there is none yet. A snapshot holds every identity of its source, so
// only a principal that reads every identity may read it.
func (e *Engine) Snapshot(ctx context.Context, p Principal, source string) ([]byte, error) {
	if ReachOf(p.Role, PermRead) != Anywhere {
		return nil, identity.Errorf(identity.Forbidden, "role %s may not read a source's snapshot", p.Role)
	}
	var out []byte
	err := e.store.View(ctx, func(tx store.Tx) error {
		data, err := tx.GetSnapshot(ctx, source)
		if store.IsNotFound(err) {
			return nil
		}
		out = data
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
