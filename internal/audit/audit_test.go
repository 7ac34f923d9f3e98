package audit

import (
	"errors"
	"testing"
	"time"
)

func chain(n int) []Record {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	var out []Record
	var seq int64
	prev := ""
	for i := 0; i < n; i++ {
		r := New(at.Add(time.Duration(i)*time.Second), "tok_1", "event.accepted", "idn_1", "case_1", map[string]any{"i": i})
		r.Chain(seq, prev)
		seq, prev = r.Seq, r.Hash
		out = append(out, r)
	}
	return out
}

func verify(rs []Record, headSeq int64, headHash string) error {
	var v Verifier
	for i := range rs {
		if err := v.Next(&rs[i]); err != nil {
			return err
		}
	}
	return v.Finish(headSeq, headHash)
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func([]Record) []Record
		wantSeq int64
	}{
		{"untouched", func(r []Record) []Record { return r }, 0},
		{"edited data", func(r []Record) []Record { r[2].Data = []byte(`{"i":99}`); return r }, 3},
		{"edited actor", func(r []Record) []Record { r[0].Actor = "someone"; return r }, 1},
		{"deleted middle", func(r []Record) []Record { return append(r[:1], r[2:]...) }, 2},
		{"deleted tail", func(r []Record) []Record { return r[:4] }, 5},
		{"rehashed edit", func(r []Record) []Record {
			r[1].Action = "nothing.happened"
			r[1].Hash = r[1].computeHash()
			return r
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := chain(5)
			headSeq, headHash := rs[4].Seq, rs[4].Hash
			err := verify(tt.tamper(rs), headSeq, headHash)
			if tt.wantSeq == 0 {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			var bad *BadRecordError
			if !errors.As(err, &bad) || bad.Seq != tt.wantSeq {
				t.Fatalf("verify = %v, want bad record %d", err, tt.wantSeq)
			}
		})
	}
}
