package sqlstore

// Tx's part for the audit trail.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
)

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

// The chain's rows: what they mean, and how records are sealed and read
// back, is package audit's (audit/chain.go); this file reads and writes
// them.

// placeCond is the condition "(xid, id) op place" on the columns named
// (prefix+"xid", prefix+"id"), with its arguments, in the form d's planner
// serves from an index: a row-value comparison on PostgreSQL. On a
// single-writer backend every xid is 0: records compare on id alone (the
// rowid there), seals on an equality on xid and a range on id (SQLite
// scans an index for a row-value range).
func (d Dialect) placeCond(prefix, op string, p audit.Place) (string, []any) {
	switch {
	case d.OneWriter && prefix == "":
		return "id " + op + " ?", []any{p.ID}
	case d.OneWriter:
		return prefix + "xid = ? AND " + prefix + "id " + op + " ?", []any{p.Xid, p.ID}
	}
	return "(" + prefix + "xid, " + prefix + "id) " + op + " (?, ?)", []any{p.Xid, p.ID}
}

// auditOrder is ORDER BY for chain order.
func (d Dialect) auditOrder() string {
	if d.OneWriter {
		return " ORDER BY id"
	}
	return " ORDER BY xid, id"
}

// auditSealRows are the rows sealing reads and writes (audit.SealRows),
// on a connection whose transaction holds no other audit work.
type auditSealRows struct {
	c Conn
	d Dialect
}

// AuditSealRows gives audit.Seal the audit rows of c's transaction: the
// SQLite writer's just before it commits, or the PostgreSQL sealer's own.
func AuditSealRows(c Conn, d Dialect) audit.SealRows { return auditSealRows{c, d} }

func (r auditSealRows) LockAuditHead(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	err := QueryRow(ctx, r.c, []any{&h.Seq, &h.Hash, &h.Sealed.Xid, &h.Sealed.ID}, "SELECT seq, hash, sealed_xid, sealed_id FROM audit_head WHERE id = 1"+r.d.ForUpdate)
	if errors.Is(err, ErrNoRows) {
		return h, errHeadMissing
	}
	if err != nil {
		return h, fmt.Errorf("audit head: %w", err)
	}
	return h, nil
}

// UnsealedAudit reads records after place of transactions older than the
// dialect's Horizon: on PostgreSQL every record a running transaction may
// still commit is after them.
func (r auditSealRows) UnsealedAudit(ctx context.Context, after audit.Place, limit int, fn func(*audit.Stored) error) error {
	cond, args := r.d.placeCond("", ">", after)
	q := "SELECT " + recordCols + " FROM audit_records WHERE " + cond
	if r.d.Horizon != "" {
		q += " AND xid < " + r.d.Horizon
	}
	q += r.d.auditOrder()
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	return eachRecord(ctx, r.c, q, args, fn)
}

func (r auditSealRows) AddAuditSeal(ctx context.Context, s audit.SealRow, h audit.Head) error {
	if _, err := r.c.Exec(ctx, "INSERT INTO audit_seals (first_seq, first_xid, first_id, ids, prev_hash, hashes) VALUES (?, ?, ?, ?, ?, ?)",
		s.FirstSeq, s.First.Xid, s.First.ID, s.IDs, s.PrevHash, s.Hashes); err != nil {
		return fmt.Errorf("audit seal: %w", err)
	}
	if _, err := r.c.Exec(ctx, "UPDATE audit_head SET seq = ?, hash = ?, sealed_xid = ?, sealed_id = ? WHERE id = 1", h.Seq, h.Hash, h.Sealed.Xid, h.Sealed.ID); err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	return nil
}

var errHeadMissing = &identity.Error{Code: identity.Internal, Message: "audit head row is missing: the audit log was tampered with"}

// placeholders returns "(?, ?), (?, ?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}

const sealCols = "first_seq, first_xid, first_id, ids, prev_hash, hashes"

func scanSeal(scan func(...any) error) (audit.SealRow, error) {
	var s audit.SealRow
	err := scan(&s.FirstSeq, &s.First.Xid, &s.First.ID, &s.IDs, &s.PrevHash, &s.Hashes)
	return s, err
}

const recordCols = "id, xid, at, actor, action, identity_id, case_id, data"

func scanRecord(scan func(...any) error) (*audit.Stored, error) {
	var r audit.Stored
	var micros int64
	var data string
	if err := scan(&r.Place.ID, &r.Place.Xid, &micros, &r.Actor, &r.Action, &r.IdentityID, &r.CaseID, &data); err != nil {
		return nil, err
	}
	r.At = time.UnixMicro(micros).UTC()
	if data != "" {
		r.Data = json.RawMessage(data)
	}
	return &r, nil
}

// eachRecord runs q for audit records and hands each to fn as it is read.
func eachRecord(ctx context.Context, c Conn, q string, args []any, fn func(*audit.Stored) error) error {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	return EachRow(rows, func(scan func(...any) error) error {
		r, err := scanRecord(scan)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// The rows reading the chain needs (audit.Rows); package audit reads them
// (audit.Scan, audit.Verify).

func (t *Tx) AuditHead(ctx context.Context) (int64, string, error) {
	var seq int64
	var hash string
	err := t.row(ctx, []any{&seq, &hash}, "SELECT seq, hash FROM audit_head WHERE id = 1")
	if errors.Is(err, ErrNoRows) {
		return 0, "", errHeadMissing
	}
	return seq, hash, err
}

func (t *Tx) AuditSealed(ctx context.Context) (audit.Place, error) {
	var p audit.Place
	err := t.row(ctx, []any{&p.Xid, &p.ID}, "SELECT sealed_xid, sealed_id FROM audit_head WHERE id = 1")
	if errors.Is(err, ErrNoRows) {
		return p, errHeadMissing
	}
	return p, err
}

func (t *Tx) AuditSeals(ctx context.Context, fromSeq int64, n int) ([]audit.SealRow, error) {
	return queryAll(ctx, t.c, scanSeal, "SELECT "+sealCols+" FROM audit_seals WHERE first_seq >= ? ORDER BY first_seq LIMIT ?", fromSeq, n)
}

func (t *Tx) AuditRecords(ctx context.Context, from *audit.Place, to audit.Place, toIncluded bool, fn func(*audit.Stored) error) error {
	op := "<"
	if toIncluded {
		op = "<="
	}
	upTo, args := t.d.placeCond("", op, to)
	q := "SELECT " + recordCols + " FROM audit_records WHERE " + upTo
	if from != nil {
		cond, more := t.d.placeCond("", ">=", *from)
		q += " AND " + cond
		args = append(args, more...)
	}
	return eachRecord(ctx, t.c, q+t.d.auditOrder(), args, fn)
}

func (t *Tx) AuditRecordsOf(ctx context.Context, identityID string, upTo audit.Place, fn func(*audit.Stored) error) error {
	cond, args := t.d.placeCond("", "<=", upTo)
	return eachRecord(ctx, t.c, "SELECT "+recordCols+" FROM audit_records WHERE identity_id = ? AND "+cond+t.d.auditOrder(),
		append([]any{identityID}, args...), fn)
}

func (t *Tx) AuditSealOf(ctx context.Context, p audit.Place) (*audit.SealRow, error) {
	cond, args := t.d.placeCond("first_", "<=", p)
	found, err := queryAll(ctx, t.c, scanSeal, "SELECT "+sealCols+" FROM audit_seals WHERE "+cond+" ORDER BY first_xid DESC, first_id DESC LIMIT 1", args...)
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return &found[0], nil
}
