package sqlstore

// Tx's part for the audit trail.

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
