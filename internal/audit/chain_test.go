package audit

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// memRows keeps the chain's rows as a store's tables would, in memory:
// this package's input, with no meaning of its own.
type memRows struct {
	records []Stored // in chain order
	seals   []SealRow
	head    Head
}

func (m *memRows) LockAuditHead(context.Context) (Head, error) { return m.head, nil }

func (m *memRows) UnsealedAudit(_ context.Context, after Place, limit int, fn func(*Stored) error) error {
	n := 0
	for _, r := range m.records {
		if before(after, r.Place) && (limit == 0 || n < limit) {
			n++
			if err := fn(&r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memRows) AddAuditSeal(_ context.Context, s SealRow, h Head) error {
	m.seals, m.head = append(m.seals, s), h
	return nil
}

func (m *memRows) AuditHead(context.Context) (int64, string, error) {
	return m.head.Seq, m.head.Hash, nil
}

func (m *memRows) AuditSealed(context.Context) (Place, error) { return m.head.Sealed, nil }

func (m *memRows) AuditSeals(_ context.Context, fromSeq int64, n int) ([]SealRow, error) {
	var out []SealRow
	for _, s := range m.seals {
		if s.FirstSeq >= fromSeq && len(out) < n {
			out = append(out, s)
		}
	}
	return out, nil
}

func (m *memRows) AuditRecords(_ context.Context, from *Place, to Place, toIncluded bool, fn func(*Stored) error) error {
	for _, r := range m.records {
		if (from == nil || !before(r.Place, *from)) && (before(r.Place, to) || (toIncluded && r.Place == to)) {
			if err := fn(&r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memRows) AuditRecordsOf(ctx context.Context, identityID string, upTo Place, fn func(*Stored) error) error {
	return m.AuditRecords(ctx, nil, upTo, true, func(r *Stored) error {
		if r.IdentityID != identityID {
			return nil
		}
		return fn(r)
	})
}

func (m *memRows) AuditSealOf(_ context.Context, p Place) (*SealRow, error) {
	var out *SealRow
	for i, s := range m.seals {
		if !before(p, s.First) {
			out = &m.seals[i]
		}
	}
	return out, nil
}

func before(a, b Place) bool { return a.Xid < b.Xid || (a.Xid == b.Xid && a.ID < b.ID) }

// write appends unsealed records for identities, as AppendAudit does.
func (m *memRows) write(identities ...string) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, who := range identities {
		id := int64(len(m.records) + 1)
		m.records = append(m.records, Stored{Record: New(at.Add(time.Duration(id)*time.Second), "tok_1", "event.accepted", who, "", map[string]any{"n": id}), Place: Place{ID: id}})
	}
}

// sealed is a log of five records in two seals (three, then two).
func sealed(t *testing.T) *memRows {
	ctx := context.Background()
	m := &memRows{}
	m.write("i1", "i2", "i1")
	if n, err := Seal(ctx, m, 0); err != nil || n != 3 {
		t.Fatalf("Seal = %d, %v; want 3", n, err)
	}
	m.write("i2", "i1")
	if n, err := Seal(ctx, m, 0); err != nil || n != 2 {
		t.Fatalf("Seal = %d, %v; want 2", n, err)
	}
	if n, err := Seal(ctx, m, 0); err != nil || n != 0 {
		t.Fatalf("Seal with nothing to seal = %d, %v", n, err)
	}
	return m
}

// TestSealAndVerify: sealing chains records as Record.Chain does (the hash
// format and stored layout do not move), and Verify names the first bad
// record for each way rows can be tampered with.
func TestSealAndVerify(t *testing.T) {
	ctx := context.Background()
	m := sealed(t)
	if got := []SealRow{m.seals[0], m.seals[1]}; got[0].IDs != "1,2,3" || got[1].IDs != "4,5" || got[1].FirstSeq != 4 || got[1].First != (Place{ID: 4}) ||
		len(got[0].Hashes) != 3*64 || got[1].PrevHash != got[0].Hashes[128:] || m.head.Seq != 5 || m.head.Sealed != (Place{ID: 5}) {
		t.Fatalf("seals %+v, head %+v", got, m.head)
	}
	// The same records chained one by one give the same hashes.
	var seq int64
	var hash string
	for i, r := range m.records {
		r.Chain(seq, hash)
		seq, hash = r.Seq, r.Hash
		if want := (m.seals[0].Hashes + m.seals[1].Hashes)[64*i : 64*(i+1)]; r.Hash != want {
			t.Fatalf("record %d sealed with hash %s, chained alone %s", i+1, want, r.Hash)
		}
	}
	if n, err := Verify(ctx, m); err != nil || n != 5 {
		t.Fatalf("Verify = %d, %v; want 5 records", n, err)
	}
	var mine []int64
	if err := Scan(ctx, m, "i1", func(r *Record) error { mine = append(mine, r.Seq); return nil }); err != nil || !slices.Equal(mine, []int64{1, 3, 5}) {
		t.Fatalf("records of i1: %v, %v", mine, err)
	}

	tests := []struct {
		name    string
		tamper  func(m *memRows)
		wantSeq int64
		reason  string
	}{
		{"record altered", func(m *memRows) { m.records[2].Actor = "mallory" }, 3, "content does not match its hash"},
		{"record deleted", func(m *memRows) { m.records = slices.Delete(m.records, 1, 2) }, 2, "missing (sealed as record id 2, next present is id 3)"},
		{"last record deleted", func(m *memRows) { m.records = m.records[:4] }, 5, "missing (sealed as record id 5): the record was deleted"},
		{"seal deleted", func(m *memRows) { m.seals = m.seals[:1] }, 4, "record id 4 lies among sealed records but no seal lists it"},
		{"tail and its seal deleted", func(m *memRows) { m.records, m.seals = m.records[:3], m.seals[:1] }, 4, "the log ends at 3 but 5 records were appended"},
		{"seal's list altered", func(m *memRows) { m.seals[1].IDs = "4,x" }, 4, "its seal's record list is unreadable"},
		{"seal's hashes altered", func(m *memRows) { m.seals[1].Hashes = m.seals[1].Hashes[:64] }, 4, "its seal's hashes do not match its records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sealed(t)
			tt.tamper(m)
			_, err := Verify(ctx, m)
			var bad *BadRecordError
			if !errors.As(err, &bad) || bad.Seq != tt.wantSeq || !strings.Contains(bad.Reason, tt.reason) {
				t.Fatalf("Verify = %v; want record %d: %s", err, tt.wantSeq, tt.reason)
			}
		})
	}
}

// TestHashFormat holds the hash of one record: chains already stored must
// keep verifying, so the encoding never changes.
func TestHashFormat(t *testing.T) {
	r := New(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), "tok_1", "event.accepted", "idn_1", "case_1", map[string]any{"i": 1})
	r.Chain(41, strings.Repeat("ab", 32))
	if want := "7477e9b1a2db34ead94418748670432538e743909b4e4ff8e1f8f584ce98d1e9"; r.Hash != want {
		t.Fatalf("hash = %s, want %s", r.Hash, want)
	}
}
