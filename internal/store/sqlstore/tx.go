package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

// Tx implements store.Tx over a backend's transaction.
type Tx struct {
	c       Conn
	d       Dialect
	enqueue Enqueuer
}

var _ store.Tx = (*Tx)(nil)

// NewTx wraps a backend transaction. enqueue may be nil for read-only
// transactions.
func NewTx(c Conn, d Dialect, enqueue Enqueuer) *Tx { return &Tx{c: c, d: d, enqueue: enqueue} }

func notFound(what, id string) error {
	return &identity.Error{Code: identity.NotFound, Message: fmt.Sprintf("%s %q not found", what, id), Err: store.ErrNotFound}
}

// write runs a statement whose result nobody reads. Where the connection
// can defer statements (Deferrer), it is queued and sent with the next
// statement that needs an answer, or at commit, saving a round trip.
func (t *Tx) write(ctx context.Context, q string, args ...any) error {
	if d, ok := t.c.(Deferrer); ok {
		d.ExecLater(q, args...)
		return nil
	}
	_, err := t.c.Exec(ctx, q, args...)
	return err
}

func (t *Tx) row(ctx context.Context, dest []any, q string, args ...any) error {
	return QueryRow(ctx, t.c, dest, q, args...)
}

// one runs a query for at most one row and scans it; no row is a NotFound
// error about the kind of thing named what.
func one[T any](ctx context.Context, c Conn, kind, what string, scan func(func(...any) error) (*T, error), q string, args ...any) (*T, error) {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, notFound(kind, what)
	}
	return scan(rows.Scan)
}

// Enqueue implements store.Tx.
func (t *Tx) Enqueue(ctx context.Context, args store.JobArgs, runAt time.Time) error {
	if t.enqueue == nil {
		return errors.New("enqueue in a read-only transaction")
	}
	return t.enqueue(ctx, args, runAt)
}

// ---- events

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

// pairsIn looks up rows of table by the pairs (a, b) in chunks and hands
// each row to scan. Each pair is its own arm of a UNION ALL, an equality
// on both columns of a unique index: a form every planner answers with one
// index probe per pair, even before the table has statistics (a row-value
// IN list was planned as a scan of the first column's index on a new
// PostgreSQL table, which grew linearly with the table).
func pairsIn(ctx context.Context, c Conn, cols, table, a, b, lock string, pairs [][2]string, scan func(func(...any) error) error) error {
	return queryEach(ctx, c, pairsStatements(cols, table, a, b, lock, pairs), func(_ int, s func(...any) error) error { return scan(s) })
}

// pairsStatements are pairsIn's queries.
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

// ---- identities

const identityCols = "id, source, external_id, kind, state, display_name, owner_id, manager_id, attributes, created_at, updated_at"

func scanIdentity(scan func(...any) error) (*identity.Identity, error) {
	var id identity.Identity
	var kind, state, attrs string
	var created, updated int64
	if err := scan(&id.ID, &id.Source, &id.ExternalID, &kind, &state, &id.DisplayName, &id.OwnerID, &id.ManagerID, &attrs, &created, &updated); err != nil {
		return nil, err
	}
	id.Kind, id.State = identity.Kind(kind), identity.State(state)
	if err := json.Unmarshal([]byte(attrs), &id.Attributes); err != nil {
		return nil, fmt.Errorf("identity %s attributes: %w", id.ID, err)
	}
	if id.Attributes == nil {
		id.Attributes = map[string]any{}
	}
	id.CreatedAt, id.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &id, nil
}

func marshalAttrs(a map[string]any) (string, error) {
	if a == nil {
		return "{}", nil
	}
	b, err := json.Marshal(a)
	return string(b), err
}

func (t *Tx) InsertIdentity(ctx context.Context, id *identity.Identity) error {
	attrs, err := marshalAttrs(id.Attributes)
	if err != nil {
		return err
	}
	err = t.write(ctx, "INSERT INTO identities ("+identityCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		id.ID, id.Source, id.ExternalID, string(id.Kind), string(id.State), id.DisplayName, id.OwnerID, id.ManagerID, attrs, micros(id.CreatedAt), micros(id.UpdatedAt))
	if err != nil {
		return fmt.Errorf("insert identity: %w", err)
	}
	return nil
}

func (t *Tx) UpdateIdentity(ctx context.Context, id *identity.Identity) error {
	attrs, err := marshalAttrs(id.Attributes)
	if err != nil {
		return err
	}
	n, err := t.c.Exec(ctx, "UPDATE identities SET kind = ?, state = ?, display_name = ?, owner_id = ?, manager_id = ?, attributes = ?, updated_at = ? WHERE id = ?",
		string(id.Kind), string(id.State), id.DisplayName, id.OwnerID, id.ManagerID, attrs, micros(id.UpdatedAt), id.ID)
	if err == nil && n == 0 {
		return notFound("identity", id.ID)
	}
	return err
}

func (t *Tx) GetIdentity(ctx context.Context, id string) (*identity.Identity, error) {
	return one(ctx, t.c, "identity", id, scanIdentity, "SELECT "+identityCols+" FROM identities WHERE id = ?"+t.lock(), id)
}

// lock is what a lookup of identities appends to lock the rows it reads
// until the transaction ends: the dialect's FOR UPDATE in a read-write
// transaction, nothing in a read-only one (or where the database has one
// writer anyway). Events about one identity accepted at the same time, by
// two replicas say, then apply one after the other, each planned from what
// the other left: without it a mover that read an identity before a
// concurrent leaver committed could write it back as active.
func (t *Tx) lock() string {
	if t.enqueue == nil {
		return ""
	}
	return t.d.ForUpdate
}

func (t *Tx) GetIdentityByExternalID(ctx context.Context, source, externalID string) (*identity.Identity, error) {
	return one(ctx, t.c, "identity", source+"/"+externalID, scanIdentity,
		"SELECT "+identityCols+" FROM identities WHERE source = ? AND external_id = ?"+t.lock(), source, externalID)
}

func (t *Tx) ListIdentities(ctx context.Context, f store.IdentityFilter) ([]identity.Identity, error) {
	var where []string
	var args []any
	// Filters are fixed columns bound as parameters: nothing from the
	// request ever becomes SQL text.
	for _, c := range []struct {
		col string
		v   string
	}{{"kind", string(f.Kind)}, {"state", string(f.State)}, {"source", f.Source}, {"owner_id", f.Owner}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if f.Owner != "" {
		// identities_owner holds only identities that have an owner.
		where = append(where, "owner_id <> ''")
	}
	if f.VisibleTo != "" {
		where = append(where, "(id = ? OR owner_id = ? OR manager_id = ?)")
		args = append(args, f.VisibleTo, f.VisibleTo, f.VisibleTo)
	}
	if f.After != "" {
		where = append(where, "id > ?")
		args = append(args, f.After)
	}
	q := "SELECT " + identityCols + " FROM identities"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, limit)
	rows, err := t.c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []identity.Identity
	for rows.Next() {
		id, err := scanIdentity(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, *id)
	}
	return out, rows.Err()
}

// ---- grants

func (t *Tx) ListGrants(ctx context.Context, identityID string) ([]identity.Grant, error) {
	rows, err := t.c.Query(ctx, "SELECT entitlement, system, reason, case_id, granted_at, expires_at, approved_by FROM grants WHERE identity_id = ? ORDER BY entitlement", identityID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []identity.Grant
	for rows.Next() {
		g := identity.Grant{IdentityID: identityID}
		var granted, expires int64
		if err := rows.Scan(&g.Entitlement, &g.System, &g.Reason, &g.CaseID, &granted, &expires, &g.ApprovedBy); err != nil {
			return nil, err
		}
		g.GrantedAt, g.ExpiresAt = fromMicros(granted), fromMicros(expires)
		out = append(out, g)
	}
	return out, rows.Err()
}

const insertGrant = `INSERT INTO grants (identity_id, entitlement, system, reason, case_id, granted_at, expires_at, approved_by)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

func (t *Tx) PutGrant(ctx context.Context, g *identity.Grant) error {
	return t.write(ctx, insertGrant+`
ON CONFLICT (identity_id, entitlement) DO UPDATE SET system = excluded.system, reason = excluded.reason, case_id = excluded.case_id,
  granted_at = excluded.granted_at, expires_at = excluded.expires_at, approved_by = excluded.approved_by`,
		g.IdentityID, g.Entitlement, g.System, g.Reason, g.CaseID, micros(g.GrantedAt), micros(g.ExpiresAt), g.ApprovedBy)
}

func (t *Tx) InsertGrant(ctx context.Context, g *identity.Grant) error {
	return t.write(ctx, insertGrant, g.IdentityID, g.Entitlement, g.System, g.Reason, g.CaseID, micros(g.GrantedAt), micros(g.ExpiresAt), g.ApprovedBy)
}

func (t *Tx) DeleteGrant(ctx context.Context, identityID, entitlement string) (bool, error) {
	n, err := t.c.Exec(ctx, "DELETE FROM grants WHERE identity_id = ? AND entitlement = ?", identityID, entitlement)
	return n > 0, err
}

// ---- credentials

const credCols = "id, identity_id, rule, system, type, status, marker, fingerprint, hash, sealed, revealed, issued_at, expires_at, revoked_at, case_id"

func scanCred(scan func(...any) error) (*store.StoredCredential, error) {
	var c store.StoredCredential
	var status string
	var revealed int
	var issued, expires, revoked int64
	if err := scan(&c.ID, &c.IdentityID, &c.Rule, &c.System, &c.Type, &status, &c.Marker, &c.Fingerprint, &c.Hash, &c.Sealed, &revealed, &issued, &expires, &revoked, &c.CaseID); err != nil {
		return nil, err
	}
	c.Status = identity.CredentialStatus(status)
	c.Revealed = revealed != 0
	c.IssuedAt, c.ExpiresAt, c.RevokedAt = fromMicros(issued), fromMicros(expires), fromMicros(revoked)
	return &c, nil
}

func (t *Tx) InsertCredential(ctx context.Context, c *store.StoredCredential) error {
	err := t.write(ctx, "INSERT INTO credentials ("+credCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.IdentityID, c.Rule, c.System, c.Type, string(c.Status), c.Marker, c.Fingerprint, nullBytes(c.Hash), nullBytes(c.Sealed),
		boolInt(c.Revealed), micros(c.IssuedAt), micros(c.ExpiresAt), micros(c.RevokedAt), c.CaseID)
	if err != nil {
		return fmt.Errorf("insert credential: %w", err)
	}
	return nil
}

func (t *Tx) GetCredential(ctx context.Context, id string) (*store.StoredCredential, error) {
	return one(ctx, t.c, "credential", id, scanCred, "SELECT "+credCols+" FROM credentials WHERE id = ?", id)
}

func (t *Tx) GetCredentialByHash(ctx context.Context, hash []byte) (*store.StoredCredential, error) {
	return one(ctx, t.c, "credential", "by hash", scanCred, "SELECT "+credCols+" FROM credentials WHERE hash = ?", hash)
}

func (t *Tx) ListCredentials(ctx context.Context, identityID string, activeOnly bool) ([]identity.Credential, error) {
	q := "SELECT " + credCols + " FROM credentials WHERE identity_id = ?"
	args := []any{identityID}
	if activeOnly {
		q += " AND status = ?"
		args = append(args, string(identity.CredentialActive))
	}
	rows, err := t.c.Query(ctx, q+" ORDER BY issued_at, id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []identity.Credential
	for rows.Next() {
		c, err := scanCred(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, c.Credential)
	}
	return out, rows.Err()
}

func (t *Tx) RevokeCredential(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := t.c.Exec(ctx, "UPDATE credentials SET status = ?, revoked_at = ?, sealed = NULL WHERE id = ? AND status = ?",
		string(identity.CredentialRevoked), micros(at), id, string(identity.CredentialActive))
	return n > 0, err
}

func (t *Tx) RevokeSystemCredentials(ctx context.Context, identityID, system string, at time.Time) ([]string, error) {
	return t.strings(ctx, "UPDATE credentials SET status = ?, revoked_at = ?, sealed = NULL WHERE identity_id = ? AND system = ? AND status = ? RETURNING id",
		string(identity.CredentialRevoked), micros(at), identityID, system, string(identity.CredentialActive))
}

// strings runs q and returns its one text column, row by row.
func (t *Tx) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	return queryAll(ctx, t.c, func(scan func(...any) error) (string, error) {
		var v string
		return v, scan(&v)
	}, q, args...)
}

func (t *Tx) TakeSecret(ctx context.Context, id string) ([]byte, error) {
	// The conditional UPDATE is the once-only gate: it takes the row lock
	// on PostgreSQL, so of two concurrent reveals exactly one sees n == 1.
	n, err := t.c.Exec(ctx, "UPDATE credentials SET revealed = 1 WHERE id = ? AND revealed = 0 AND status = ? AND sealed IS NOT NULL", id, string(identity.CredentialActive))
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if _, err := t.GetCredential(ctx, id); err != nil {
			return nil, err
		}
		return nil, identity.Errorf(identity.Gone, "the secret of credential %q was already revealed or the credential is revoked", id)
	}
	var sealed []byte
	if err := t.row(ctx, []any{&sealed}, "SELECT sealed FROM credentials WHERE id = ?", id); err != nil {
		return nil, err
	}
	if _, err := t.c.Exec(ctx, "UPDATE credentials SET sealed = NULL WHERE id = ?", id); err != nil {
		return nil, err
	}
	return sealed, nil
}

// ---- accounts

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

// ---- cases and steps

const caseCols = "id, event_id, identity_id, type, status, submitted_by, reason, created_at, updated_at, completed_at"

func scanCase(scan func(...any) error) (*store.Case, error) {
	var c store.Case
	var typ, status string
	var created, updated, completed int64
	if err := scan(&c.ID, &c.EventID, &c.IdentityID, &typ, &status, &c.SubmittedBy, &c.Reason, &created, &updated, &completed); err != nil {
		return nil, err
	}
	c.Type, c.Status = identity.EventType(typ), store.CaseStatus(status)
	c.CreatedAt, c.UpdatedAt, c.CompletedAt = fromMicros(created), fromMicros(updated), fromMicros(completed)
	return &c, nil
}

func (t *Tx) InsertCase(ctx context.Context, c *store.Case) error {
	revocations := c.Revocations()
	inline := ""
	if c.Status == store.CaseCompleted && len(c.Steps) > 0 {
		var err error
		if inline, err = encodeSteps(c); err != nil {
			return fmt.Errorf("insert case: %w", err)
		}
	}
	if err := t.write(ctx, "INSERT INTO cases ("+caseCols+", steps_json, revocations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.EventID, c.IdentityID, string(c.Type), string(c.Status), c.SubmittedBy, c.Reason, micros(c.CreatedAt), micros(c.UpdatedAt), micros(c.CompletedAt),
		inline, revocations); err != nil {
		return fmt.Errorf("insert case: %w", err)
	}
	for i := range c.Steps {
		c.Steps[i].CaseID = c.ID
	}
	if inline != "" {
		return nil
	}
	// Steps go in multi-row inserts (one round trip for a whole plan), in
	// chunks that stay under SQLite's bound-parameter limit.
	const chunk = 500
	for start := 0; start < len(c.Steps); start += chunk {
		n := min(chunk, len(c.Steps)-start)
		args := make([]any, 0, n*17)
		for i := start; i < start+n; i++ {
			s := &c.Steps[i]
			s.CaseID = c.ID
			args = append(args, c.ID, s.Seq, c.IdentityID, string(s.Action), s.System, s.Entitlement, s.Rule, s.CredentialID, s.Duration.Milliseconds(), boolInt(s.NeedsApproval),
				s.Reason, string(s.Status), s.Attempts, s.LastError, s.Result, s.DecidedBy, micros(s.UpdatedAt))
		}
		if err := t.write(ctx, "INSERT INTO steps ("+stepCols+") VALUES "+placeholders(n, 17), args...); err != nil {
			return fmt.Errorf("insert steps: %w", err)
		}
	}
	return nil
}

const stepCols = "case_id, seq, identity_id, action, system, entitlement, rule, credential_id, duration_ms, needs_approval, reason, status, attempts, last_error, result, decided_by, updated_at"

func scanStep(scan func(...any) error) (*store.Step, error) {
	var s store.Step
	var identityID, action, status string
	var durMS, updated int64
	var needs int
	if err := scan(&s.CaseID, &s.Seq, &identityID, &action, &s.System, &s.Entitlement, &s.Rule, &s.CredentialID, &durMS, &needs, &s.Reason, &status, &s.Attempts, &s.LastError, &s.Result, &s.DecidedBy, &updated); err != nil {
		return nil, err
	}
	s.Action, s.Status = plan.Action(action), store.StepStatus(status)
	s.Duration = time.Duration(durMS) * time.Millisecond
	s.NeedsApproval = needs != 0
	s.UpdatedAt = fromMicros(updated)
	return &s, nil
}

// stepJSON is a step in cases.steps_json: the steps table's columns, with
// the same precision (milliseconds, microseconds), so that a case reads
// back alike from either.
type stepJSON struct {
	Seq           int    `json:"seq"`
	Action        string `json:"action"`
	System        string `json:"system"`
	Entitlement   string `json:"entitlement,omitempty"`
	Rule          string `json:"rule,omitempty"`
	CredentialID  string `json:"credentialId,omitempty"`
	DurationMS    int64  `json:"durationMs,omitempty"`
	NeedsApproval bool   `json:"needsApproval,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Status        string `json:"status"`
	Attempts      int    `json:"attempts,omitempty"`
	LastError     string `json:"lastError,omitempty"`
	Result        string `json:"result,omitempty"`
	DecidedBy     string `json:"decidedBy,omitempty"`
	UpdatedAt     int64  `json:"updatedAt"`
}

func stepsToJSON(steps []store.Step) []stepJSON {
	out := make([]stepJSON, len(steps))
	for i, s := range steps {
		out[i] = stepJSON{Seq: s.Seq, Action: string(s.Action), System: s.System, Entitlement: s.Entitlement, Rule: s.Rule, CredentialID: s.CredentialID,
			DurationMS: s.Duration.Milliseconds(), NeedsApproval: s.NeedsApproval, Reason: s.Reason, Status: string(s.Status), Attempts: s.Attempts,
			LastError: s.LastError, Result: s.Result, DecidedBy: s.DecidedBy, UpdatedAt: micros(s.UpdatedAt)}
	}
	return out
}

// encodeSteps is c's steps as one column holds them (cases.steps_json,
// events.case_steps); each step is marked as c's.
func encodeSteps(c *store.Case) (string, error) {
	for i := range c.Steps {
		c.Steps[i].CaseID = c.ID
	}
	b, err := json.Marshal(stepsToJSON(c.Steps))
	return string(b), err
}

func stepsFromJSON(caseID string, js []stepJSON) []store.Step {
	out := make([]store.Step, len(js))
	for i, j := range js {
		out[i] = store.Step{CaseID: caseID, Seq: j.Seq, Step: plan.Step{Action: plan.Action(j.Action), System: j.System, Entitlement: j.Entitlement, Rule: j.Rule,
			CredentialID: j.CredentialID, Duration: time.Duration(j.DurationMS) * time.Millisecond, NeedsApproval: j.NeedsApproval, Reason: j.Reason},
			Status: store.StepStatus(j.Status), Attempts: j.Attempts, LastError: j.LastError, Result: j.Result, DecidedBy: j.DecidedBy, UpdatedAt: fromMicros(j.UpdatedAt)}
	}
	return out
}

func (t *Tx) steps(ctx context.Context, where string, args ...any) ([]store.Step, error) {
	rows, err := t.c.Query(ctx, "SELECT "+stepCols+" FROM steps WHERE "+where+" ORDER BY case_id, seq", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Step
	for rows.Next() {
		s, err := scanStep(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, *s)
	}
	return out, rows.Err()
}

// eventCaseCols are the case an event's row holds (migration 014), in
// caseCols' order: completed, with no reason, created, updated and
// completed at case_at. Queries that read them state events_cases'
// predicate, eventCaseStored, literally. Only events whose IDs CaseIDFor
// maps ("evt_" and a ULID) hold a case.
const (
	eventCaseCols   = "'case_' || substr(id, 5), id, identity_id, type, '" + string(store.CaseCompleted) + "', principal, '', case_at, case_at, case_at"
	eventCaseStored = "case_steps <> ''"
)

func (t *Tx) GetCase(ctx context.Context, id string) (*store.Case, error) {
	var inline string
	scan := func(scan func(...any) error) (*store.Case, error) {
		return scanCase(func(dest ...any) error { return scan(append(dest, &inline)...) })
	}
	c, err := one(ctx, t.c, "case", id, scan, "SELECT "+caseCols+", steps_json FROM cases WHERE id = ?", id)
	if store.IsNotFound(err) && store.EventIDOf(id) != "" {
		// A case completed on acceptance may live in its event's row.
		c, err = one(ctx, t.c, "case", id, scan, "SELECT "+eventCaseCols+", case_steps FROM events WHERE id = ? AND "+eventCaseStored, store.EventIDOf(id))
	}
	if err != nil {
		return nil, err
	}
	if inline != "" {
		var js []stepJSON
		if err := json.Unmarshal([]byte(inline), &js); err != nil {
			return nil, fmt.Errorf("case %s steps: %w", id, err)
		}
		c.Steps = stepsFromJSON(id, js)
		return c, nil
	}
	c.Steps, err = t.steps(ctx, "case_id = ?", id)
	if c.Steps == nil {
		c.Steps = []store.Step{}
	}
	return c, err
}

func (t *Tx) UpdateCase(ctx context.Context, c *store.Case) error {
	n, err := t.c.Exec(ctx, "UPDATE cases SET status = ?, reason = ?, updated_at = ?, completed_at = ? WHERE id = ?",
		string(c.Status), c.Reason, micros(c.UpdatedAt), micros(c.CompletedAt), c.ID)
	if err == nil && n == 0 {
		return notFound("case", c.ID)
	}
	return err
}

func (t *Tx) UpdateStep(ctx context.Context, s *store.Step) error {
	n, err := t.c.Exec(ctx, "UPDATE steps SET credential_id = ?, status = ?, attempts = ?, last_error = ?, result = ?, decided_by = ?, updated_at = ? WHERE case_id = ? AND seq = ?",
		s.CredentialID, string(s.Status), s.Attempts, s.LastError, s.Result, s.DecidedBy, micros(s.UpdatedAt), s.CaseID, s.Seq)
	if err == nil && n == 0 {
		return notFound("step", fmt.Sprintf("%s/%d", s.CaseID, s.Seq))
	}
	return err
}

func (t *Tx) ListOpenSteps(ctx context.Context, identityID string) ([]store.Step, error) {
	return t.steps(ctx, "identity_id = ? AND "+stepsWaiting, identityID)
}

// The partial indexes on steps (migration 009) hold only waiting steps;
// a planner uses one only when the query states its predicate literally,
// so these are spelled out rather than bound. They are constants of the
// code, never input.
const (
	stepsWaiting = "status IN ('" + string(store.StepPending) + "', '" + string(store.StepAwaitingApproval) + "')"
	stepsPending = "status = '" + string(store.StepPending) + "'"
)

func (t *Tx) ListPendingCases(ctx context.Context, limit int) ([]string, error) {
	rows, err := t.c.Query(ctx, "SELECT DISTINCT case_id FROM steps WHERE "+stepsPending+" ORDER BY case_id LIMIT ?", limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (t *Tx) CountPendingSteps(ctx context.Context) ([]store.StepCount, error) {
	rows, err := t.c.Query(ctx, "SELECT system, action, COUNT(*) FROM steps WHERE "+stepsPending+" GROUP BY system, action ORDER BY system, action")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.StepCount
	for rows.Next() {
		var c store.StepCount
		if err := rows.Scan(&c.System, &c.Action, &c.Count); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (t *Tx) ListCases(ctx context.Context, identityID string, limit int) ([]store.Case, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	// Cases in their own rows, and those completed on acceptance that live
	// in their event's row.
	rows, err := t.c.Query(ctx, "SELECT "+caseCols+" FROM cases WHERE identity_id = ? UNION ALL SELECT "+eventCaseCols+" FROM events WHERE identity_id = ? AND "+eventCaseStored+
		" ORDER BY created_at DESC, id DESC LIMIT ?", identityID, identityID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Case
	for rows.Next() {
		c, err := scanCase(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// ---- findings

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

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, c Conn, scan func(func(...any) error) (T, error), q string, args ...any) ([]T, error) {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
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
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q += " ORDER BY created_at, id LIMIT ?"
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

func (t *Tx) ResolveFindings(ctx context.Context, identityID, kind, system string, at time.Time, cause string) ([]identity.Finding, error) {
	q := "SELECT " + findingCols + " FROM findings WHERE identity_id = ? AND kind = ? AND resolved_at = 0"
	args := []any{identityID, kind}
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

// ---- audit

// AppendAudit writes recs as unsealed records. A seal chains them later:
// the sealer (PostgreSQL) or, where the connection is an InlineSealer
// (SQLite), the writing transaction before it commits.
func (t *Tx) AppendAudit(ctx context.Context, recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	q := "INSERT INTO audit_records (at, actor, action, identity_id, case_id, data) VALUES " + placeholders(len(recs), 6)
	args := make([]any, 0, 6*len(recs))
	for _, r := range recs {
		args = append(args, r.At.UnixMicro(), r.Actor, r.Action, r.IdentityID, r.CaseID, string(r.Data))
	}
	if err := t.write(ctx, q, args...); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if is, ok := t.c.(InlineSealer); ok {
		is.AuditAppended()
	}
	return nil
}

// auditPlace is a position in chain order: records sort by (xid, id).
type auditPlace struct{ xid, id int64 }

// placeCond is the condition "(xid, id) op place" on the columns named
// (prefix+"xid", prefix+"id"), with its arguments, in the form d's planner
// serves from an index: a row-value comparison on PostgreSQL. On a
// single-writer backend every xid is 0: records compare on id alone (the
// rowid there), seals on an equality on xid and a range on id (SQLite
// scans an index for a row-value range).
func (d Dialect) placeCond(prefix, op string, p auditPlace) (string, []any) {
	switch {
	case d.OneWriter && prefix == "":
		return "id " + op + " ?", []any{p.id}
	case d.OneWriter:
		return prefix + "xid = ? AND " + prefix + "id " + op + " ?", []any{p.xid, p.id}
	}
	return "(" + prefix + "xid, " + prefix + "id) " + op + " (?, ?)", []any{p.xid, p.id}
}

// auditOrder is ORDER BY for chain order.
func (d Dialect) auditOrder() string {
	if d.OneWriter {
		return " ORDER BY id"
	}
	return " ORDER BY xid, id"
}

// SealAudit chains up to limit unsealed records (all of them when limit
// is 0) of transactions that have ended, in (xid, id) order, in one seal
// row, and moves the head past them. It returns how many it sealed. It
// locks the head row: run it in a transaction that holds no other audit
// work, one sealer at a time.
func SealAudit(ctx context.Context, c Conn, d Dialect, limit int) (int, error) {
	var seq int64
	var hash string
	var at auditPlace
	err := QueryRow(ctx, c, []any{&seq, &hash, &at.xid, &at.id}, "SELECT seq, hash, sealed_xid, sealed_id FROM audit_head WHERE id = 1"+d.ForUpdate)
	if errors.Is(err, ErrNoRows) {
		return 0, errHeadMissing
	}
	if err != nil {
		return 0, fmt.Errorf("audit head: %w", err)
	}
	after, args := d.placeCond("", ">", at)
	q := "SELECT " + recordCols + " FROM audit_records WHERE " + after
	if d.Horizon != "" {
		q += " AND xid < " + d.Horizon
	}
	q += d.auditOrder()
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	var (
		first       auditPlace
		ids, hashes strings.Builder
		n           int
	)
	prevHash := hash
	err = EachRow(rows, func(scan func(...any) error) error {
		r, err := scanRecord(scan)
		if err != nil {
			return err
		}
		r.Chain(seq, hash)
		if n == 0 {
			first = r.at
		} else {
			ids.WriteByte(',')
		}
		ids.WriteString(strconv.FormatInt(r.at.id, 10))
		hashes.WriteString(r.Hash)
		seq, hash, at = r.Seq, r.Hash, r.at
		n++
		return nil
	})
	if err != nil || n == 0 {
		return 0, err
	}
	if _, err := c.Exec(ctx, "INSERT INTO audit_seals (first_seq, first_xid, first_id, ids, prev_hash, hashes) VALUES (?, ?, ?, ?, ?, ?)",
		seq-int64(n)+1, first.xid, first.id, ids.String(), prevHash, hashes.String()); err != nil {
		return 0, fmt.Errorf("audit seal: %w", err)
	}
	if _, err := c.Exec(ctx, "UPDATE audit_head SET seq = ?, hash = ?, sealed_xid = ?, sealed_id = ? WHERE id = 1", seq, hash, at.xid, at.id); err != nil {
		return 0, fmt.Errorf("audit head: %w", err)
	}
	return n, nil
}

var errHeadMissing = &identity.Error{Code: identity.Internal, Message: "audit head row is missing: the audit log was tampered with"}

// placeholders returns "(?, ?), (?, ?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}

// seal is one audit_seals row, decoded.
type seal struct {
	firstSeq int64
	first    auditPlace
	ids      []int64
	prevHash string
	hashes   []string
}

func scanSeal(scan func(...any) error) (*seal, error) {
	var s seal
	var ids, hashes string
	if err := scan(&s.firstSeq, &s.first.xid, &s.first.id, &ids, &s.prevHash, &hashes); err != nil {
		return nil, err
	}
	for _, f := range strings.Split(ids, ",") {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, &audit.BadRecordError{Seq: s.firstSeq, Reason: "its seal's record list is unreadable: the seal was altered"}
		}
		s.ids = append(s.ids, id)
	}
	if len(hashes) != 64*len(s.ids) {
		return nil, &audit.BadRecordError{Seq: s.firstSeq, Reason: "its seal's hashes do not match its records: the seal was altered"}
	}
	for i := range s.ids {
		s.hashes = append(s.hashes, hashes[64*i:64*(i+1)])
	}
	return &s, nil
}

const sealCols = "first_seq, first_xid, first_id, ids, prev_hash, hashes"

// chained gives r the seq and hashes of position i of s.
func (s *seal) chained(r *audit.Record, i int) {
	r.Seq = s.firstSeq + int64(i)
	r.Hash = s.hashes[i]
	r.PrevHash = s.prevHash
	if i > 0 {
		r.PrevHash = s.hashes[i-1]
	}
}

// auditRecord is a stored record and its place in chain order.
type auditRecord struct {
	audit.Record
	at auditPlace
}

const recordCols = "id, xid, at, actor, action, identity_id, case_id, data"

func scanRecord(scan func(...any) error) (*auditRecord, error) {
	var r auditRecord
	var micros int64
	var data string
	if err := scan(&r.at.id, &r.at.xid, &micros, &r.Actor, &r.Action, &r.IdentityID, &r.CaseID, &data); err != nil {
		return nil, err
	}
	r.At = time.UnixMicro(micros).UTC()
	if data != "" {
		r.Data = json.RawMessage(data)
	}
	return &r, nil
}

// sealsPerRead is how many seals ScanAudit holds in memory at a time.
const sealsPerRead = 100

// ScanAudit calls fn for the sealed records in chain order, each with the
// seq and hashes its seal gives it. Over the whole log (identityID "") it
// reads seals and the records they cover side by side, and returns an
// *audit.BadRecordError where they disagree: a sealed record that is gone,
// or a record among sealed ones that no seal lists.
func (t *Tx) ScanAudit(ctx context.Context, identityID string, fn func(*audit.Record) error) error {
	var sealed auditPlace
	if err := t.row(ctx, []any{&sealed.xid, &sealed.id}, "SELECT sealed_xid, sealed_id FROM audit_head WHERE id = 1"); err != nil {
		if errors.Is(err, ErrNoRows) {
			return errHeadMissing
		}
		return err
	}
	if identityID != "" {
		return t.scanIdentityAudit(ctx, identityID, sealed, fn)
	}
	// from is where the next seals' records begin; nil before the first
	// read, so that records before the first seal count as unlisted.
	var from *auditPlace
	nextSeq := int64(1)
	for {
		seals, err := t.readSeals(ctx, "first_seq >= ? ORDER BY first_seq LIMIT ?", nextSeq, sealsPerRead+1)
		if err != nil {
			return err
		}
		var upTo string
		var args []any
		var next *seal
		if len(seals) > sealsPerRead {
			// Up to the first seal of the next read, which waits for it.
			next = seals[sealsPerRead]
			upTo, args = t.d.placeCond("", "<", next.first)
			seals = seals[:sealsPerRead]
		} else {
			upTo, args = t.d.placeCond("", "<=", sealed)
		}
		q := "SELECT " + recordCols + " FROM audit_records WHERE " + upTo
		if from != nil {
			cond, more := t.d.placeCond("", ">=", *from)
			q += " AND " + cond
			args = append(args, more...)
		}
		if err := t.zipSeals(ctx, seals, q+t.d.auditOrder(), args, fn); err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		nextSeq, from = next.firstSeq, &next.first
	}
}

func (t *Tx) readSeals(ctx context.Context, where string, args ...any) ([]*seal, error) {
	rows, err := t.c.Query(ctx, "SELECT "+sealCols+" FROM audit_seals WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	var out []*seal
	err = EachRow(rows, func(scan func(...any) error) error {
		s, err := scanSeal(scan)
		if err == nil {
			out = append(out, s)
		}
		return err
	})
	return out, err
}

// zipSeals walks the records q returns alongside the positions seals
// list, in chain order, and hands each record to fn with its seq and
// hashes.
func (t *Tx) zipSeals(ctx context.Context, seals []*seal, q string, args []any, fn func(*audit.Record) error) error {
	listed := make(map[int64]bool)
	for _, s := range seals {
		for _, id := range s.ids {
			listed[id] = true
		}
	}
	// seal i, position j: the next place a record is expected; after is
	// the seq of the last record handed to fn.
	i, j := 0, 0
	after := int64(0)
	if len(seals) > 0 {
		after = seals[0].firstSeq - 1
	}
	rows, err := t.c.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	err = EachRow(rows, func(scan func(...any) error) error {
		r, err := scanRecord(scan)
		if err != nil {
			return err
		}
		for i < len(seals) && j >= len(seals[i].ids) {
			i, j = i+1, 0
		}
		switch {
		case i == len(seals) || !listed[r.at.id]:
			return &audit.BadRecordError{Seq: after + 1, Reason: fmt.Sprintf("record id %d lies among sealed records but no seal lists it: it was inserted directly, or its seal was deleted", r.at.id)}
		case r.at.id != seals[i].ids[j]:
			return &audit.BadRecordError{Seq: seals[i].firstSeq + int64(j), Reason: fmt.Sprintf("missing (sealed as record id %d, next present is id %d): the record was deleted or moved", seals[i].ids[j], r.at.id)}
		}
		seals[i].chained(&r.Record, j)
		j++
		after = r.Seq
		return fn(&r.Record)
	})
	if err != nil {
		return err
	}
	for i < len(seals) && j >= len(seals[i].ids) {
		i, j = i+1, 0
	}
	if i < len(seals) {
		return &audit.BadRecordError{Seq: seals[i].firstSeq + int64(j), Reason: fmt.Sprintf("missing (sealed as record id %d): the record was deleted", seals[i].ids[j])}
	}
	return nil
}

// scanIdentityAudit calls fn for the sealed records of one identity, each
// with the seq and hashes of its seal. It does not check the chain: a
// record no seal lists comes with seq 0 and no hashes.
func (t *Tx) scanIdentityAudit(ctx context.Context, identityID string, sealed auditPlace, fn func(*audit.Record) error) error {
	var recs []*auditRecord
	upTo, args := t.d.placeCond("", "<=", sealed)
	rows, err := t.c.Query(ctx, "SELECT "+recordCols+" FROM audit_records WHERE identity_id = ? AND "+upTo+t.d.auditOrder(),
		append([]any{identityID}, args...)...)
	if err != nil {
		return err
	}
	if err := EachRow(rows, func(scan func(...any) error) error {
		r, err := scanRecord(scan)
		if err == nil {
			recs = append(recs, r)
		}
		return err
	}); err != nil {
		return err
	}
	var s *seal
	var pos map[int64]int
	for _, r := range recs {
		if _, ok := pos[r.at.id]; !ok {
			cond, args := t.d.placeCond("first_", "<=", r.at)
			found, err := t.readSeals(ctx, cond+" ORDER BY first_xid DESC, first_id DESC LIMIT 1", args...)
			if err != nil {
				return err
			}
			s, pos = nil, nil
			if len(found) == 1 {
				s, pos = found[0], make(map[int64]int, len(found[0].ids))
				for i, id := range s.ids {
					pos[id] = i
				}
			}
		}
		if i, ok := pos[r.at.id]; ok {
			s.chained(&r.Record, i)
		}
		if err := fn(&r.Record); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) AuditHead(ctx context.Context) (int64, string, error) {
	var seq int64
	var hash string
	err := t.row(ctx, []any{&seq, &hash}, "SELECT seq, hash FROM audit_head WHERE id = 1")
	if errors.Is(err, ErrNoRows) {
		return 0, "", errHeadMissing
	}
	return seq, hash, err
}

// ---- settings

func (t *Tx) GetMeta(ctx context.Context, name string) (string, error) {
	var v string
	err := t.row(ctx, []any{&v}, "SELECT value FROM jml_meta WHERE name = ?", name)
	if errors.Is(err, ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (t *Tx) PutMeta(ctx context.Context, name, value string) error {
	_, err := t.c.Exec(ctx, "INSERT INTO jml_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", name, value)
	return err
}

// ---- tokens

func (t *Tx) InsertToken(ctx context.Context, tk *store.Token) error {
	err := t.write(ctx, "INSERT INTO api_tokens (id, name, role, source, identity_id, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		tk.ID, tk.Name, tk.Role, tk.Source, tk.IdentityID, tk.Hash, micros(tk.CreatedAt), micros(tk.RevokedAt))
	return err
}

// tokenQuery reads tokens with their bound identity's state: the request
// path authenticates in this one query.
const tokenQuery = "SELECT t.id, t.name, t.role, t.source, t.identity_id, t.hash, t.created_at, t.revoked_at, COALESCE(i.state, '') " +
	"FROM api_tokens t LEFT JOIN identities i ON i.id = t.identity_id AND t.identity_id <> ''"

func scanToken(scan func(...any) error) (store.Token, error) {
	var tk store.Token
	var created, revoked int64
	var state string
	err := scan(&tk.ID, &tk.Name, &tk.Role, &tk.Source, &tk.IdentityID, &tk.Hash, &created, &revoked, &state)
	tk.CreatedAt, tk.RevokedAt, tk.IdentityState = fromMicros(created), fromMicros(revoked), identity.State(state)
	return tk, err
}

func (t *Tx) getToken(ctx context.Context, what, where string, arg any) (*store.Token, error) {
	rows, err := t.c.Query(ctx, tokenQuery+" WHERE "+where, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, notFound("token", what)
	}
	tk, err := scanToken(rows.Scan)
	if err != nil {
		return nil, err
	}
	return &tk, rows.Err()
}

func (t *Tx) GetTokenByHash(ctx context.Context, hash []byte) (*store.Token, error) {
	return t.getToken(ctx, "by hash", "t.hash = ?", hash)
}

func (t *Tx) GetToken(ctx context.Context, id string) (*store.Token, error) {
	return t.getToken(ctx, id, "t.id = ?", id)
}

func (t *Tx) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := t.row(ctx, []any{&n}, "SELECT COUNT(*) FROM api_tokens WHERE revoked_at = 0")
	return n, err
}

func (t *Tx) ListTokens(ctx context.Context) ([]store.Token, error) {
	return queryAll(ctx, t.c, scanToken, tokenQuery+" ORDER BY t.created_at, t.id")
}

func (t *Tx) RevokeIdentityTokens(ctx context.Context, identityID string, at time.Time) ([]string, error) {
	if identityID == "" {
		return nil, nil
	}
	return t.strings(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE identity_id = ? AND revoked_at = 0 RETURNING id", micros(at), identityID)
}

func (t *Tx) RevokeToken(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := t.c.Exec(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0", micros(at), id)
	if err != nil || n > 0 {
		return n > 0, err
	}
	var exists int
	if err := t.row(ctx, []any{&exists}, "SELECT COUNT(*) FROM api_tokens WHERE id = ?", id); err != nil {
		return false, err
	}
	if exists == 0 {
		return false, notFound("token", id)
	}
	return false, nil
}

// ---- source snapshots and holds

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

const holdCols = "id, source, reason, events, snapshot, status, created_by, created_at, decided_by, decided_at"

func (t *Tx) InsertHold(ctx context.Context, h *store.Hold) error {
	evs, err := json.Marshal(h.Events)
	if err != nil {
		return err
	}
	_, err = t.c.Exec(ctx, "INSERT INTO holds ("+holdCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		h.ID, h.Source, h.Reason, string(evs), h.Snapshot, string(h.Status), h.CreatedBy, micros(h.CreatedAt), h.DecidedBy, micros(h.DecidedAt))
	return err
}

func scanHold(scan func(...any) error) (*store.Hold, error) {
	var h store.Hold
	var evs, status string
	var created, decided int64
	if err := scan(&h.ID, &h.Source, &h.Reason, &evs, &h.Snapshot, &status, &h.CreatedBy, &created, &h.DecidedBy, &decided); err != nil {
		return nil, err
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
	rows, err := t.c.Query(ctx, q+" ORDER BY created_at DESC, id DESC LIMIT 1000", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Hold
	for rows.Next() {
		h, err := scanHold(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, *h)
	}
	return out, rows.Err()
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

// ---- SCIM resources

const scimCols = "id, source, resource_type, user_name, external_id, display_name, active, data, version, created_at, updated_at, title, user_type, family_name, given_name, emails"

func scanSCIM(scan func(...any) error) (*store.SCIMResource, error) {
	var r store.SCIMResource
	var active int
	var data string
	var created, updated int64
	if err := scan(&r.ID, &r.Source, &r.Type, &r.UserName, &r.ExternalID, &r.DisplayName, &active, &data, &r.Version, &created, &updated,
		&r.Title, &r.UserType, &r.FamilyName, &r.GivenName, &r.Emails); err != nil {
		return nil, err
	}
	r.Active, r.Data, r.CreatedAt, r.UpdatedAt = active == 1, []byte(data), fromMicros(created), fromMicros(updated)
	return &r, nil
}

// putSCIMValues replaces a resource's multi-valued attribute rows.
func (t *Tx) putSCIMValues(ctx context.Context, r *store.SCIMResource, replace bool) error {
	if replace {
		if _, err := t.c.Exec(ctx, "DELETE FROM scim_values WHERE resource_id = ?", r.ID); err != nil {
			return err
		}
	}
	for _, v := range r.Values {
		if err := t.write(ctx, "INSERT INTO scim_values (resource_id, attr, type, value, display, primary_value) VALUES (?, ?, ?, ?, ?, ?)",
			r.ID, v.Attr, v.Type, v.Value, v.Display, boolInt(v.Primary)); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) InsertSCIM(ctx context.Context, r *store.SCIMResource) error {
	if err := t.putSCIMValues(ctx, r, false); err != nil {
		return err
	}
	_, err := t.c.Exec(ctx, "INSERT INTO scim_resources ("+scimCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		r.ID, r.Source, r.Type, r.UserName, r.ExternalID, r.DisplayName, boolInt(r.Active), string(r.Data), r.Version, micros(r.CreatedAt), micros(r.UpdatedAt),
		r.Title, r.UserType, r.FamilyName, r.GivenName, r.Emails)
	return err
}

func (t *Tx) GetSCIM(ctx context.Context, source, id string) (*store.SCIMResource, error) {
	return one(ctx, t.c, "resource", id, scanSCIM, "SELECT "+scimCols+" FROM scim_resources WHERE source = ? AND id = ?", source, id)
}

func (t *Tx) GetSCIMByUserName(ctx context.Context, source, resourceType, userName string) (*store.SCIMResource, error) {
	return one(ctx, t.c, "resource", userName, scanSCIM, "SELECT "+scimCols+" FROM scim_resources WHERE source = ? AND resource_type = ? AND user_name = ?", source, resourceType, userName)
}

func (t *Tx) UpdateSCIM(ctx context.Context, r *store.SCIMResource) error {
	n, err := t.c.Exec(ctx, "UPDATE scim_resources SET user_name = ?, external_id = ?, display_name = ?, active = ?, data = ?, version = ?, updated_at = ?, "+
		"title = ?, user_type = ?, family_name = ?, given_name = ?, emails = ? WHERE source = ? AND id = ?",
		r.UserName, r.ExternalID, r.DisplayName, boolInt(r.Active), string(r.Data), r.Version, micros(r.UpdatedAt),
		r.Title, r.UserType, r.FamilyName, r.GivenName, r.Emails, r.Source, r.ID)
	if err == nil && n == 0 {
		return notFound("resource", r.ID)
	}
	if err != nil {
		return err
	}
	return t.putSCIMValues(ctx, r, true)
}

func (t *Tx) DeleteSCIM(ctx context.Context, source, id string) (bool, error) {
	n, err := t.c.Exec(ctx, "DELETE FROM scim_resources WHERE source = ? AND id = ?", source, id)
	if err != nil || n == 0 {
		return false, err
	}
	_, err = t.c.Exec(ctx, "DELETE FROM scim_values WHERE resource_id = ?", id)
	return true, err
}

func (t *Tx) ListSCIM(ctx context.Context, q store.SCIMQuery) (int, []store.SCIMResource, error) {
	allow := filterable
	if q.Type == "Group" {
		allow = groupFilterable
	}
	where := "source = ? AND resource_type = ?"
	args := []any{q.Source, q.Type}
	if q.Filter != nil {
		cond, condArgs, err := sqlWhere(q.Filter, allow)
		if err != nil {
			return 0, nil, err
		}
		where += " AND (" + cond + ")"
		args = append(args, condArgs...)
	}
	var total int
	if err := t.row(ctx, []any{&total}, "SELECT COUNT(*) FROM scim_resources WHERE "+where, args...); err != nil {
		return 0, nil, err
	}
	order := "created_at"
	if q.SortBy != "" {
		col, err := sortColumn(q.SortBy, allow)
		if err != nil {
			return 0, nil, err
		}
		order = col
	}
	if q.Descending {
		order += " DESC"
	}
	limit := q.Limit
	if limit <= 0 {
		return total, nil, nil
	}
	rows, err := t.c.Query(ctx, "SELECT "+scimCols+" FROM scim_resources WHERE "+where+" ORDER BY "+order+", id LIMIT ? OFFSET ?", append(args, limit, q.Offset)...)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	var out []store.SCIMResource
	for rows.Next() {
		r, err := scanSCIM(rows.Scan)
		if err != nil {
			return 0, nil, err
		}
		out = append(out, *r)
	}
	return total, out, rows.Err()
}
