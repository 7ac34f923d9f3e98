package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// The chain: how records written unsealed are chained by seals, and how
// the chain is read back and verified. A store keeps three kinds of rows
// (records, seals and a one-row head) and hands them to this file through
// SealRows and Rows; everything those rows mean is decided here, so both
// backends seal, and every reader reads, the same way.
//
// A record is written once, without seq or hashes, in the transaction of
// the change it describes. A seal chains a run of records in chain order
// (Place): it holds the seq of its first record, that record's place, the
// records' IDs in order and each record's hash, and the hash the run
// follows. The head holds the last seq and hash sealed and the place of
// the last record sealed, so a truncated tail is seen.

// Place is a record's position in chain order: records sort by (Xid, ID).
// On a single-writer store Xid is 0 and ID order is commit order.
type Place struct{ Xid, ID int64 }

// Stored is a record as the store keeps it, with its place; its Seq,
// PrevHash and Hash are given by the seal that lists it.
type Stored struct {
	Record
	Place Place
}

// SealRow is one seal as the store keeps it.
type SealRow struct {
	FirstSeq int64
	First    Place  // the place of the seal's first record
	IDs      string // the records' IDs in chain order, comma-separated
	PrevHash string // the hash of the record before the first
	Hashes   string // each record's hash (64 hex digits), concatenated
}

// Head is the head row: the last seq and hash sealed, and the place of the
// last record sealed (records after it are not sealed yet).
type Head struct {
	Seq    int64
	Hash   string
	Sealed Place
}

// SealRows is what sealing reads and writes of a store, in a transaction
// that holds no other audit work.
type SealRows interface {
	// LockAuditHead reads the head and locks it until the transaction
	// ends, so that one sealer at a time extends the chain.
	LockAuditHead(ctx context.Context) (Head, error)
	// UnsealedAudit calls fn, in chain order, for the records after
	// place whose transactions have ended (none can commit before them
	// later), at most limit of them (all when limit is 0).
	UnsealedAudit(ctx context.Context, after Place, limit int, fn func(*Stored) error) error
	// AddAuditSeal stores seal and moves the head to head.
	AddAuditSeal(ctx context.Context, seal SealRow, head Head) error
}

// Seal chains the records not sealed yet (up to limit of them; all when
// limit is 0) in one seal after the head, and moves the head past them.
// It returns how many it sealed.
func Seal(ctx context.Context, rows SealRows, limit int) (int, error) {
	h, err := rows.LockAuditHead(ctx)
	if err != nil {
		return 0, err
	}
	var (
		s           = SealRow{PrevHash: h.Hash, FirstSeq: h.Seq + 1}
		ids, hashes strings.Builder
		n           int
	)
	err = rows.UnsealedAudit(ctx, h.Sealed, limit, func(r *Stored) error {
		r.Chain(h.Seq, h.Hash)
		if n == 0 {
			s.First = r.Place
		} else {
			ids.WriteByte(',')
		}
		ids.WriteString(strconv.FormatInt(r.Place.ID, 10))
		hashes.WriteString(r.Hash)
		h = Head{Seq: r.Seq, Hash: r.Hash, Sealed: r.Place}
		n++
		return nil
	})
	if err != nil || n == 0 {
		return 0, err
	}
	s.IDs, s.Hashes = ids.String(), hashes.String()
	if err := rows.AddAuditSeal(ctx, s, h); err != nil {
		return 0, err
	}
	return n, nil
}

// Rows is what reading the chain needs of a store. Every call of one Scan
// or Verify must read one snapshot (one read transaction), so that a seal
// committed meanwhile never looks like a deleted record.
type Rows interface {
	// AuditHead returns the last seq and hash sealed.
	AuditHead(ctx context.Context) (int64, string, error)
	// AuditSealed returns the place of the last record sealed.
	AuditSealed(ctx context.Context) (Place, error)
	// AuditSeals returns up to n seals in seq order, from the one whose
	// first seq is fromSeq (or the next there is).
	AuditSeals(ctx context.Context, fromSeq int64, n int) ([]SealRow, error)
	// AuditRecords calls fn, in chain order, for the records from place
	// from on (from the first when from is nil) up to place to, to itself
	// included only when toIncluded.
	AuditRecords(ctx context.Context, from *Place, to Place, toIncluded bool, fn func(*Stored) error) error
	// AuditRecordsOf calls fn, in chain order, for one identity's records
	// up to place upTo, included.
	AuditRecordsOf(ctx context.Context, identityID string, upTo Place, fn func(*Stored) error) error
	// AuditSealOf returns the last seal whose first record is at or
	// before place p, nil when there is none.
	AuditSealOf(ctx context.Context, p Place) (*SealRow, error)
}

// sealsPerRead is how many seals Scan holds in memory at a time.
const sealsPerRead = 100

// Scan calls fn for the sealed records in chain order, each with the seq
// and hashes its seal gives it; of one identity, or of all when
// identityID is empty. Over the whole log it reads seals and the records
// they cover side by side, and returns a *BadRecordError where they
// disagree: a sealed record that is gone, a record among sealed ones that
// no seal lists, or a seal that cannot be read. It does not check hashes
// (Verify does). A record of one identity that no seal lists comes with
// seq 0 and no hashes.
func Scan(ctx context.Context, rows Rows, identityID string, fn func(*Record) error) error {
	sealed, err := rows.AuditSealed(ctx)
	if err != nil {
		return err
	}
	if identityID != "" {
		return scanIdentity(ctx, rows, identityID, sealed, fn)
	}
	// from is where the next seals' records begin; nil before the first
	// read, so that records before the first seal count as unlisted.
	var from *Place
	nextSeq := int64(1)
	for {
		raw, err := rows.AuditSeals(ctx, nextSeq, sealsPerRead+1)
		if err != nil {
			return err
		}
		seals, err := decodeSeals(raw)
		if err != nil {
			return err
		}
		to, toIncluded := sealed, true
		var next *seal
		if len(seals) > sealsPerRead {
			// Up to the first seal of the next read, which waits for it.
			next = seals[sealsPerRead]
			to, toIncluded = next.first, false
			seals = seals[:sealsPerRead]
		}
		if err := zipSeals(ctx, rows, seals, from, to, toIncluded, fn); err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		nextSeq, from = next.firstSeq, &next.first
	}
}

// Verify checks the whole chain: every record against its seal and the
// record before it (Scan, Verifier.Next), then the head, which catches a
// truncated tail. It returns how many records verified and, for a broken
// chain, a *BadRecordError naming the first bad record. rows must read one
// snapshot.
func Verify(ctx context.Context, rows Rows) (int64, error) {
	var v Verifier
	if err := Scan(ctx, rows, "", v.Next); err != nil {
		return v.Count(), err
	}
	seq, hash, err := rows.AuditHead(ctx)
	if err != nil {
		return v.Count(), err
	}
	return v.Count(), v.Finish(seq, hash)
}

// seal is a SealRow decoded.
type seal struct {
	firstSeq int64
	first    Place
	ids      []int64
	prevHash string
	hashes   []string
}

func decodeSeal(r SealRow) (*seal, error) {
	s := seal{firstSeq: r.FirstSeq, first: r.First, prevHash: r.PrevHash}
	for _, f := range strings.Split(r.IDs, ",") {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, &BadRecordError{Seq: s.firstSeq, Reason: "its seal's record list is unreadable: the seal was altered"}
		}
		s.ids = append(s.ids, id)
	}
	if len(r.Hashes) != 64*len(s.ids) {
		return nil, &BadRecordError{Seq: s.firstSeq, Reason: "its seal's hashes do not match its records: the seal was altered"}
	}
	for i := range s.ids {
		s.hashes = append(s.hashes, r.Hashes[64*i:64*(i+1)])
	}
	return &s, nil
}

func decodeSeals(raw []SealRow) ([]*seal, error) {
	out := make([]*seal, 0, len(raw))
	for _, r := range raw {
		s, err := decodeSeal(r)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// chained gives r the seq and hashes of position i of s.
func (s *seal) chained(r *Record, i int) {
	r.Seq = s.firstSeq + int64(i)
	r.Hash = s.hashes[i]
	r.PrevHash = s.prevHash
	if i > 0 {
		r.PrevHash = s.hashes[i-1]
	}
}

// zipSeals walks the records from place from up to place to alongside the
// positions seals list, in chain order, and hands each record to fn with
// its seq and hashes.
func zipSeals(ctx context.Context, rows Rows, seals []*seal, from *Place, to Place, toIncluded bool, fn func(*Record) error) error {
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
	err := rows.AuditRecords(ctx, from, to, toIncluded, func(r *Stored) error {
		for i < len(seals) && j >= len(seals[i].ids) {
			i, j = i+1, 0
		}
		switch {
		case i == len(seals) || !listed[r.Place.ID]:
			return &BadRecordError{Seq: after + 1, Reason: fmt.Sprintf("record id %d lies among sealed records but no seal lists it: it was inserted directly, or its seal was deleted", r.Place.ID)}
		case r.Place.ID != seals[i].ids[j]:
			return &BadRecordError{Seq: seals[i].firstSeq + int64(j), Reason: fmt.Sprintf("missing (sealed as record id %d, next present is id %d): the record was deleted or moved", seals[i].ids[j], r.Place.ID)}
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
		return &BadRecordError{Seq: seals[i].firstSeq + int64(j), Reason: fmt.Sprintf("missing (sealed as record id %d): the record was deleted", seals[i].ids[j])}
	}
	return nil
}

// scanIdentity calls fn for the sealed records of one identity, each with
// the seq and hashes of its seal. It does not check the chain: a record no
// seal lists comes with seq 0 and no hashes.
func scanIdentity(ctx context.Context, rows Rows, identityID string, sealed Place, fn func(*Record) error) error {
	var recs []*Stored
	if err := rows.AuditRecordsOf(ctx, identityID, sealed, func(r *Stored) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		return err
	}
	var s *seal
	var pos map[int64]int
	for _, r := range recs {
		if _, ok := pos[r.Place.ID]; !ok {
			raw, err := rows.AuditSealOf(ctx, r.Place)
			if err != nil {
				return err
			}
			s, pos = nil, nil
			if raw != nil {
				if s, err = decodeSeal(*raw); err != nil {
					return err
				}
				pos = make(map[int64]int, len(s.ids))
				for i, id := range s.ids {
					pos[id] = i
				}
			}
		}
		if i, ok := pos[r.Place.ID]; ok {
			s.chained(&r.Record, i)
		}
		if err := fn(&r.Record); err != nil {
			return err
		}
	}
	return nil
}
