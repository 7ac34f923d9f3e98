package sqlstore

// Tx's part for findings.

import (
	"context"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

func (t *Tx) InsertFinding(ctx context.Context, f *identity.Finding) (bool, error) {
	var n int
	if err := t.row(ctx, []any{&n}, "SELECT COUNT(*) FROM findings WHERE identity_id = ? AND kind = ? AND resolved_at = 0 AND system = ?", f.IdentityID, f.Kind, f.System); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	_, err := t.c.Exec(ctx, "INSERT INTO findings (id, kind, identity_id, system, message, created_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		f.ID, f.Kind, f.IdentityID, f.System, f.Message, micros(f.CreatedAt), micros(f.ResolvedAt))
	return err == nil, err
}

const findingCols = "id, kind, identity_id, system, message, created_at, resolved_at, resolution, acked_by, ack_reason, acked_at, ack_until"

func scanFinding(scan func(...any) error) (identity.Finding, error) {
	var fd identity.Finding
	var created, resolved, acked, until int64
	err := scan(&fd.ID, &fd.Kind, &fd.IdentityID, &fd.System, &fd.Message, &created, &resolved, &fd.Resolution, &fd.AckedBy, &fd.AckReason, &acked, &until)
	fd.CreatedAt, fd.ResolvedAt, fd.AckedAt, fd.AckUntil = fromMicros(created), fromMicros(resolved), fromMicros(acked), fromMicros(until)
	fd.State = fd.StateOf()
	return fd, err
}

func (t *Tx) findings(ctx context.Context, q string, args ...any) ([]identity.Finding, error) {
	return queryAll(ctx, t.c, scanFinding, q, args...)
}

func (t *Tx) ListFindings(ctx context.Context, f store.FindingFilter) ([]identity.Finding, error) {
	q := "SELECT " + findingCols + " FROM findings WHERE 1 = 1"
	var args []any
	if f.Kind != "" {
		q += " AND kind = ?"
		args = append(args, f.Kind)
	}
	if f.IdentityID != "" {
		q += " AND identity_id = ?"
		args = append(args, f.IdentityID)
	}
	if f.OpenOnly {
		q += " AND resolved_at = 0"
	}
	switch f.State {
	case identity.FindingOpen:
		q += " AND resolved_at = 0 AND ack_until = 0"
	case identity.FindingAcknowledged:
		q += " AND resolved_at = 0 AND ack_until > 0"
	case identity.FindingResolved:
		q += " AND resolved_at > 0"
	}
	order := " ORDER BY created_at, id"
	if f.Paged {
		q += " AND id > ?"
		args = append(args, f.After)
		order = " ORDER BY id"
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q += order + " LIMIT ?"
	args = append(args, limit)
	return t.findings(ctx, q, args...)
}

func (t *Tx) GetFinding(ctx context.Context, id string) (*identity.Finding, error) {
	out, err := t.findings(ctx, "SELECT "+findingCols+" FROM findings WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, notFound("finding", id)
	}
	return &out[0], nil
}

func (t *Tx) ResolveFindings(ctx context.Context, identityID string, kinds []string, system string, at time.Time, cause string) ([]identity.Finding, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	q := "SELECT " + findingCols + " FROM findings WHERE identity_id = ? AND kind IN (?" + strings.Repeat(", ?", len(kinds)-1) + ") AND resolved_at = 0"
	args := []any{identityID}
	for _, k := range kinds {
		args = append(args, k)
	}
	if system != "" {
		q += " AND system = ?"
		args = append(args, system)
	}
	open, err := t.findings(ctx, q, args...)
	if err != nil || len(open) == 0 {
		return nil, err
	}
	for i := range open {
		if _, err := t.c.Exec(ctx, "UPDATE findings SET resolved_at = ?, resolution = ? WHERE id = ? AND resolved_at = 0", micros(at), cause, open[i].ID); err != nil {
			return nil, err
		}
		open[i].ResolvedAt, open[i].Resolution = at, cause
		open[i].State = open[i].StateOf()
	}
	return open, nil
}

func (t *Tx) AcknowledgeFinding(ctx context.Context, id, by, reason string, at, until time.Time) (bool, error) {
	n, err := t.c.Exec(ctx, "UPDATE findings SET acked_by = ?, ack_reason = ?, acked_at = ?, ack_until = ? WHERE id = ? AND resolved_at = 0",
		by, reason, micros(at), micros(until), id)
	return n > 0, err
}

func (t *Tx) ReopenFinding(ctx context.Context, id string, until time.Time) (bool, error) {
	n, err := t.c.Exec(ctx, "UPDATE findings SET ack_until = 0 WHERE id = ? AND resolved_at = 0 AND ack_until = ?", id, micros(until))
	return n > 0, err
}
