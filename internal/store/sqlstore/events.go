package sqlstore

// Tx's part for events.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jml-dev/jml/internal/cases"
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

// A case and the event that opened it may share a ULID ("evt_X" opened
// "case_X"): the engine names them so. Such a case, completed on
// acceptance, never changes again, and is kept in its event's row instead
// of a row of its own (migration 014): one row written instead of two.
// GetCase and ListCases find it there by the shared ULID.

// eventIDOf is the ID of the event whose row may hold case caseID, "" for
// an ID of another form.
func eventIDOf(caseID string) string {
	if u, ok := strings.CutPrefix(caseID, "case_"); ok {
		return "evt_" + u
	}
	return ""
}

// sameULID reports whether caseID is "case_" and the ULID of eventID
// ("evt_" and it), without building either string.
func sameULID(caseID, eventID string) bool {
	c, okc := strings.CutPrefix(caseID, "case_")
	e, oke := strings.CutPrefix(eventID, "evt_")
	return okc && oke && c != "" && c == e
}

// inEventRow reports whether c can be kept in ev's row: it is the case ev
// opened, under ev's ULID, completed with no reason given, by ev's
// principal for ev's identity and type, and created, updated and completed
// at one moment; everything else about it is a column of the event.
func inEventRow(ev *store.Event, c *cases.Case) bool {
	return c != nil && sameULID(c.ID, ev.ID) && c.ID == ev.CaseID && c.EventID == ev.ID &&
		c.IdentityID == ev.IdentityID && c.Type == ev.Event.Type && c.SubmittedBy == ev.Principal &&
		c.Status == cases.Completed && c.Reason == "" && len(c.Steps) > 0 &&
		c.UpdatedAt.Equal(c.CreatedAt) && c.CompletedAt.Equal(c.CreatedAt)
}

// eventArgs are ev's values for insertEventCols, with c in the row when
// inEventRow.
func eventArgs(ev *store.Event, c *cases.Case) ([]any, error) {
	payload, err := json.Marshal(ev.Event)
	if err != nil {
		return nil, err
	}
	var steps string
	var revocations int
	var at int64
	if c != nil {
		if steps, err = encodeSteps(c); err != nil {
			return nil, fmt.Errorf("insert event %s: case steps: %w", ev.ID, err)
		}
		revocations, at = c.Revocations(), micros(c.CreatedAt)
	}
	return []any{ev.ID, ev.Event.Source, ev.Event.ID, string(ev.Event.Type), ev.IdentityID, string(payload), ev.Principal, string(ev.Status), ev.CaseID, ev.Error,
		micros(ev.ReceivedAt), micros(ev.EffectiveAt), steps, revocations, at}, nil
}

func (t *Tx) FindEvent(ctx context.Context, source, sourceEventID string) (*store.Event, error) {
	if ev, ok, err := t.pre.event(source, sourceEventID); ok {
		return ev, err
	}
	return one(ctx, t.c, "event", source+"/"+sourceEventID, scanEvent,
		"SELECT "+eventCols+" FROM events WHERE source = ? AND source_event_id = ?", source, sourceEventID)
}

func (t *Tx) InsertAccepted(ctx context.Context, ev *store.Event, c *cases.Case) error {
	inRow := inEventRow(ev, c)
	var rowCase *cases.Case
	if inRow {
		rowCase = c
	}
	args, err := eventArgs(ev, rowCase)
	if err != nil {
		return err
	}
	if err := t.write(ctx, "INSERT INTO events ("+insertEventCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", args...); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	t.pre.insertedEvent(ev)
	if c == nil || inRow {
		return nil
	}
	return t.InsertCase(ctx, c)
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

// Prefetch implements store.Tx: one query per 256 refs, all in one round
// trip where the connection is a QueryBatcher.
func (t *Tx) Prefetch(ctx context.Context, irefs []store.ExternalRef, erefs []store.EventRef) error {
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
	p := newPrefetch(irefs, erefs)
	err := queryEach(ctx, t.c, stmts, func(i int, scan func(...any) error) error {
		if i < nIdent {
			id, err := scanIdentity(scan)
			if err == nil {
				p.idents[store.ExternalRef{Source: id.Source, ExternalID: id.ExternalID}] = id
			}
			return err
		}
		ev, err := scanEvent(scan)
		if err == nil {
			p.events[store.EventRef{Source: ev.Event.Source, ID: ev.Event.ID}] = ev
		}
		return err
	})
	if err != nil {
		return err
	}
	t.pre = p
	return nil
}

func (t *Tx) GetEvent(ctx context.Context, id string) (*store.Event, error) {
	return one(ctx, t.c, "event", id, scanEvent, "SELECT "+eventCols+" FROM events WHERE id = ?", id)
}

// ListScheduled's queries repeat the predicate of the partial indexes
// events_scheduled and events_scheduled_identity (migration 018).
func (t *Tx) ListScheduled(ctx context.Context, identityID string, limit int) ([]store.Event, error) {
	scan := func(scan func(...any) error) (store.Event, error) {
		ev, err := scanEvent(scan)
		if err != nil {
			return store.Event{}, err
		}
		return *ev, nil
	}
	if identityID != "" {
		return queryAll(ctx, t.c, scan, "SELECT "+eventCols+" FROM events WHERE status = 'scheduled' AND identity_id = ? ORDER BY effective_at, id LIMIT ?", identityID, limit)
	}
	return queryAll(ctx, t.c, scan, "SELECT "+eventCols+" FROM events WHERE status = 'scheduled' ORDER BY effective_at, id LIMIT ?", limit)
}

func (t *Tx) UpdateEvent(ctx context.Context, ev *store.Event) error {
	n, err := t.c.Exec(ctx, "UPDATE events SET identity_id = ?, status = ?, case_id = ?, error = ? WHERE id = ?",
		ev.IdentityID, string(ev.Status), ev.CaseID, ev.Error, ev.ID)
	if err == nil && n == 0 {
		return notFound("event", ev.ID)
	}
	return err
}
