package sqlstore

// Tx's part for events.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

const eventCols = "id, source, source_event_id, type, identity_id, payload, principal, status, case_id, error, received_at, effective_at"

func scanEvent(scan func(...any) error) (*store.Event, error) {
	var ev store.Event
	var source, sourceID, typ, payload, status string
	var received, effective int64
	if err := scan(&ev.ID, &source, &sourceID, &typ, &ev.IdentityID, &payload, &ev.Principal, &status, &ev.CaseID, &ev.Error, &received, &effective); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(payload), &ev.Event); err != nil {
		return nil, fmt.Errorf("event %s payload: %w", ev.ID, err)
	}
	ev.Status = store.EventStatus(status)
	ev.ReceivedAt, ev.EffectiveAt = fromMicros(received), fromMicros(effective)
	return &ev, nil
}

// insertEventCols are the columns an event is inserted with: eventCols and
// the case it may carry (migration 014).
const insertEventCols = eventCols + ", case_steps, case_revocations, case_at"

// eventArgs are ev's values for insertEventCols.
func eventArgs(ev *store.Event) ([]any, error) {
	payload, err := json.Marshal(ev.Event)
	if err != nil {
		return nil, err
	}
	var steps string
	var revocations int
	var at int64
	if c := ev.Case; c != nil {
		if !store.Inlinable(ev, c) {
			return nil, fmt.Errorf("insert event %s: case %s cannot be stored in the event's row", ev.ID, c.ID)
		}
		if steps, err = encodeSteps(c); err != nil {
			return nil, fmt.Errorf("insert event %s: case steps: %w", ev.ID, err)
		}
		revocations, at = c.Revocations(), micros(c.CreatedAt)
	}
	return []any{ev.ID, ev.Event.Source, ev.Event.ID, string(ev.Event.Type), ev.IdentityID, string(payload), ev.Principal, string(ev.Status), ev.CaseID, ev.Error,
		micros(ev.ReceivedAt), micros(ev.EffectiveAt), steps, revocations, at}, nil
}

func (t *Tx) InsertEvent(ctx context.Context, ev *store.Event) (*store.Event, bool, error) {
	if ev.Case != nil {
		return nil, false, fmt.Errorf("insert event %s: a case goes in the event's row only with InsertNewEvent", ev.ID)
	}
	args, err := eventArgs(ev)
	if err != nil {
		return nil, false, err
	}
	n, err := t.c.Exec(ctx, "INSERT INTO events ("+insertEventCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, source_event_id) DO NOTHING", args...)
	if err != nil {
		return nil, false, fmt.Errorf("insert event: %w", err)
	}
	if n == 1 {
		return nil, true, nil
	}
	existing, err := one(ctx, t.c, "event", ev.Event.Source+"/"+ev.Event.ID, scanEvent,
		"SELECT "+eventCols+" FROM events WHERE source = ? AND source_event_id = ?", ev.Event.Source, ev.Event.ID)
	return existing, false, err
}

func (t *Tx) InsertNewEvent(ctx context.Context, ev *store.Event) error {
	args, err := eventArgs(ev)
	if err != nil {
		return err
	}
	return t.write(ctx, "INSERT INTO events ("+insertEventCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", args...)
}

// pairChunk bounds the pairs one lookup query binds (SQLite allows 500
// arms in a compound SELECT).
const pairChunk = 256

// pairsStatements look up rows of table by the pairs (a, b), in chunks.
// Each pair is its own arm of a UNION ALL, an equality on both columns of
// a unique index: a form every planner answers with one
// index probe per pair, even before the table has statistics (a row-value
// IN list was planned as a scan of the first column's index on a new
// PostgreSQL table, which grew linearly with the table).
func pairsStatements(cols, table, a, b, lock string, pairs [][2]string) []Statement {
	arm := "SELECT " + cols + " FROM " + table + " WHERE " + a + " = ? AND " + b + " = ?"
	if lock != "" {
		// A UNION cannot lock: the arms find the IDs, the outer query
		// locks their rows, in ID order so that two transactions locking
		// overlapping sets do not deadlock.
		arm = "SELECT id FROM " + table + " WHERE " + a + " = ? AND " + b + " = ?"
	}
	var out []Statement
	for start := 0; start < len(pairs); start += pairChunk {
		chunk := pairs[start:min(start+pairChunk, len(pairs))]
		// The list is padded to a power of two with its last pair, so that
		// a handful of query texts cover every size and prepared
		// statements are reused.
		n := 1
		for n < len(chunk) {
			n *= 2
		}
		args := make([]any, 0, 2*n)
		for i := 0; i < n; i++ {
			p := chunk[min(i, len(chunk)-1)]
			args = append(args, p[0], p[1])
		}
		q := strings.TrimSuffix(strings.Repeat(arm+" UNION ALL ", n), " UNION ALL ")
		if lock != "" {
			q = "SELECT " + cols + " FROM " + table + " WHERE id IN (" + q + ") ORDER BY id" + lock
		}
		out = append(out, Statement{Query: q, Args: args})
	}
	return out
}

// queryEach runs stmts, in one round trip where c is a QueryBatcher, and
// hands each row to each with the index of its statement.
func queryEach(ctx context.Context, c Conn, stmts []Statement, each func(i int, scan func(...any) error) error) error {
	if qb, ok := c.(QueryBatcher); ok {
		return qb.QueryEach(ctx, stmts, each)
	}
	for i, st := range stmts {
		rows, err := c.Query(ctx, st.Query, st.Args...)
		if err != nil {
			return err
		}
		if err := EachRow(rows, func(scan func(...any) error) error { return each(i, scan) }); err != nil {
			return err
		}
	}
	return nil
}

// EachRow hands every row to fn, then closes rows; it returns fn's first
// error or the rows' own.
func EachRow(rows Rows, fn func(scan func(...any) error) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// GetIdentitiesAndEvents implements store.Tx: one query per 256 refs,
// all in one round trip where the connection is a QueryBatcher.
func (t *Tx) GetIdentitiesAndEvents(ctx context.Context, irefs []store.ExternalRef, erefs []store.EventRef) (map[store.ExternalRef]*identity.Identity, map[store.EventRef]*store.Event, error) {
	ipairs := make([][2]string, len(irefs))
	for i, r := range irefs {
		ipairs[i] = [2]string{r.Source, r.ExternalID}
	}
	epairs := make([][2]string, len(erefs))
	for i, r := range erefs {
		epairs[i] = [2]string{r.Source, r.ID}
	}
	stmts := pairsStatements(identityCols, "identities", "source", "external_id", t.lock(), ipairs)
	nIdent := len(stmts)
	stmts = append(stmts, pairsStatements(eventCols, "events", "source", "source_event_id", "", epairs)...)
	idents, events := map[store.ExternalRef]*identity.Identity{}, map[store.EventRef]*store.Event{}
	err := queryEach(ctx, t.c, stmts, func(i int, scan func(...any) error) error {
		if i < nIdent {
			id, err := scanIdentity(scan)
			if err == nil {
				idents[store.ExternalRef{Source: id.Source, ExternalID: id.ExternalID}] = id
			}
			return err
		}
		ev, err := scanEvent(scan)
		if err == nil {
			events[store.EventRef{Source: ev.Event.Source, ID: ev.Event.ID}] = ev
		}
		return err
	})
	return idents, events, err
}

func (t *Tx) GetEvent(ctx context.Context, id string) (*store.Event, error) {
	return one(ctx, t.c, "event", id, scanEvent, "SELECT "+eventCols+" FROM events WHERE id = ?", id)
}

func (t *Tx) UpdateEvent(ctx context.Context, ev *store.Event) error {
	n, err := t.c.Exec(ctx, "UPDATE events SET identity_id = ?, status = ?, case_id = ?, error = ? WHERE id = ?",
		ev.IdentityID, string(ev.Status), ev.CaseID, ev.Error, ev.ID)
	if err == nil && n == 0 {
		return notFound("event", ev.ID)
	}
	return err
}
