package sqlstore

// Tx's part for source snapshots and held batches.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

func (t *Tx) GetSnapshot(ctx context.Context, source string) ([]byte, error) {
	var data []byte
	err := t.row(ctx, []any{&data}, "SELECT data FROM source_snapshots WHERE source = ?", source)
	if errors.Is(err, ErrNoRows) {
		return nil, notFound("snapshot of source", source)
	}
	return data, err
}

func (t *Tx) PutSnapshot(ctx context.Context, source string, data []byte, at time.Time) error {
	_, err := t.c.Exec(ctx, "INSERT INTO source_snapshots (source, data, updated_at) VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
		source, data, micros(at))
	return err
}

const holdCols = "id, source, reason, events, snapshot, status, created_by, created_at, decided_by, decided_at, cancel"

func (t *Tx) InsertHold(ctx context.Context, h *store.Hold) error {
	evs, err := json.Marshal(h.Events)
	if err != nil {
		return err
	}
	cancel := ""
	if len(h.Cancel) > 0 {
		b, err := json.Marshal(h.Cancel)
		if err != nil {
			return err
		}
		cancel = string(b)
	}
	_, err = t.c.Exec(ctx, "INSERT INTO holds ("+holdCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		h.ID, h.Source, h.Reason, string(evs), h.Snapshot, string(h.Status), h.CreatedBy, micros(h.CreatedAt), h.DecidedBy, micros(h.DecidedAt), cancel)
	return err
}

func scanHold(scan func(...any) error) (*store.Hold, error) {
	var h store.Hold
	var evs, status, cancel string
	var created, decided int64
	if err := scan(&h.ID, &h.Source, &h.Reason, &evs, &h.Snapshot, &status, &h.CreatedBy, &created, &h.DecidedBy, &decided, &cancel); err != nil {
		return nil, err
	}
	if cancel != "" {
		if err := json.Unmarshal([]byte(cancel), &h.Cancel); err != nil {
			return nil, fmt.Errorf("hold %s cancellations: %w", h.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(evs), &h.Events); err != nil {
		return nil, fmt.Errorf("hold %s events: %w", h.ID, err)
	}
	h.Status, h.CreatedAt, h.DecidedAt = store.HoldStatus(status), fromMicros(created), fromMicros(decided)
	return &h, nil
}

func (t *Tx) GetHold(ctx context.Context, id string) (*store.Hold, error) {
	return one(ctx, t.c, "hold", id, scanHold, "SELECT "+holdCols+" FROM holds WHERE id = ?", id)
}

func (t *Tx) ListHolds(ctx context.Context, status store.HoldStatus) ([]store.Hold, error) {
	q, args := "SELECT "+holdCols+" FROM holds", []any{}
	if status != "" {
		q, args = q+" WHERE status = ?", append(args, string(status))
	}
	return queryAll(ctx, t.c, byValue(scanHold), q+" ORDER BY created_at DESC, id DESC LIMIT 1000", args...)
}

func (t *Tx) GetOpenHold(ctx context.Context, source string) (*store.Hold, error) {
	return one(ctx, t.c, "held batch of source", source, scanHold,
		"SELECT "+holdCols+" FROM holds WHERE source = ? AND status = ? ORDER BY created_at, id LIMIT 1", source, string(store.HoldHeld))
}

func (t *Tx) SetHoldEvents(ctx context.Context, id string, events []identity.Event) error {
	evs, err := json.Marshal(events)
	if err != nil {
		return err
	}
	n, err := t.c.Exec(ctx, "UPDATE holds SET events = ? WHERE id = ? AND status = ?", string(evs), id, string(store.HoldHeld))
	if err == nil && n == 0 {
		return notFound("held batch", id)
	}
	return err
}

func (t *Tx) CountNarrowingEvents(ctx context.Context, source string, since time.Time) (int, error) {
	var n int
	// The predicate is events_narrowing's, word for word.
	err := t.row(ctx, []any{&n}, "SELECT COUNT(*) FROM events WHERE type IN ('leaver', 'suspend') AND source = ? AND received_at >= ?", source, micros(since))
	return n, err
}

func (t *Tx) CountRevocations(ctx context.Context, source string, since time.Time) (int, error) {
	var n int
	// cases_revoking holds only cases with revocations (its predicate is
	// repeated here); each is matched to its event by primary key. Cases
	// stored in their event's row are counted from events_revoking.
	err := t.row(ctx, []any{&n}, `SELECT (SELECT COALESCE(SUM(c.revocations), 0) FROM cases c JOIN events e ON e.id = c.event_id
WHERE c.revocations > 0 AND c.created_at >= ? AND e.source = ?)
+ (SELECT COALESCE(SUM(case_revocations), 0) FROM events WHERE case_revocations > 0 AND case_at >= ? AND source = ?)`,
		micros(since), source, micros(since), source)
	return n, err
}

func (t *Tx) CountIdentities(ctx context.Context, source string, states []identity.State) (int, error) {
	if len(states) == 0 {
		return 0, nil
	}
	args := []any{source}
	for _, st := range states {
		args = append(args, string(st))
	}
	var n int
	err := t.row(ctx, []any{&n}, "SELECT COUNT(*) FROM identities WHERE source = ? AND state IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(states)), ", ")+")", args...)
	return n, err
}

func (t *Tx) DecideHold(ctx context.Context, id string, status store.HoldStatus, by string, at time.Time) (bool, error) {
	n, err := t.c.Exec(ctx, "UPDATE holds SET status = ?, decided_by = ?, decided_at = ? WHERE id = ? AND status = ?",
		string(status), by, micros(at), id, string(store.HoldHeld))
	return n == 1, err
}
