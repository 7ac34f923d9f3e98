// Package audit defines jml's tamper-evident log: each record carries the
// SHA-256 of a canonical encoding of itself and of the previous record's
// hash, so editing, deleting or reordering any record breaks the chain at
// that record. Records are appended by the store in the same transaction as
// the change they describe. This package is the chain's one home: it
// computes and checks hashes, and decides what a seal holds, how records
// are sealed and how the chain is read back and verified (chain.go), over
// rows a store hands it through SealRows and Rows. It does no I/O itself.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Record is one audit entry.
type Record struct {
	Seq        int64           `json:"seq"`
	At         time.Time       `json:"at"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	IdentityID string          `json:"identityId,omitempty"`
	CaseID     string          `json:"caseId,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	PrevHash   string          `json:"prevHash"`
	Hash       string          `json:"hash"`
}

// New returns a record with Data marshalled from data (maps marshal with
// sorted keys, so the bytes are canonical). Seq, PrevHash and Hash are set
// by the store when it appends.
func New(at time.Time, actor, action, identityID, caseID string, data any) Record {
	r := Record{At: at.UTC().Truncate(time.Microsecond), Actor: actor, Action: action, IdentityID: identityID, CaseID: caseID}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			// Data is built by jml from plain types; failing here is a bug.
			panic(fmt.Sprintf("audit data: %v", err))
		}
		r.Data = b
	}
	return r
}

// Chain sets r's Seq, PrevHash and Hash to follow a record with seq and hash.
func (r *Record) Chain(prevSeq int64, prevHash string) {
	r.Seq = prevSeq + 1
	r.PrevHash = prevHash
	r.Hash = r.computeHash()
}

// computeHash is SHA-256 over a length-prefixed encoding of every field but
// Hash, in a fixed order, with the time in microseconds since the epoch:
// the encoding is unambiguous and does not depend on JSON formatting.
func (r *Record) computeHash() string {
	h := sha256.New()
	var n [8]byte
	writeInt := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	writeStr := func(s string) {
		writeInt(int64(len(s)))
		h.Write([]byte(s))
	}
	h.Write([]byte("jml-audit-v1"))
	writeInt(r.Seq)
	writeInt(r.At.UnixMicro())
	writeStr(r.Actor)
	writeStr(r.Action)
	writeStr(r.IdentityID)
	writeStr(r.CaseID)
	writeStr(string(r.Data))
	writeStr(r.PrevHash)
	return hex.EncodeToString(h.Sum(nil))
}

// Verifier checks records fed to it in sequence order.
type Verifier struct {
	prevSeq  int64
	prevHash string
	count    int64
}

// BadRecordError names the first record that breaks the chain.
type BadRecordError struct {
	Seq    int64
	Reason string
}

func (e *BadRecordError) Error() string {
	return fmt.Sprintf("audit record %d: %s", e.Seq, e.Reason)
}

// Next checks r against the records before it.
func (v *Verifier) Next(r *Record) error {
	if r.Seq != v.prevSeq+1 {
		return &BadRecordError{Seq: v.prevSeq + 1, Reason: fmt.Sprintf("missing (next record present is %d): records were deleted", r.Seq)}
	}
	if r.PrevHash != v.prevHash {
		return &BadRecordError{Seq: r.Seq, Reason: fmt.Sprintf("does not link to record %d: one of the two was altered", v.prevSeq)}
	}
	if got := r.computeHash(); got != r.Hash {
		return &BadRecordError{Seq: r.Seq, Reason: "content does not match its hash: the record was altered"}
	}
	v.prevSeq, v.prevHash = r.Seq, r.Hash
	v.count++
	return nil
}

// Finish checks the end of the log against the head the store keeps (the
// last seq and hash it appended), which catches truncation of the tail.
func (v *Verifier) Finish(headSeq int64, headHash string) error {
	if headSeq != v.prevSeq {
		return &BadRecordError{Seq: v.prevSeq + 1, Reason: fmt.Sprintf("the log ends at %d but %d records were appended: records were deleted", v.prevSeq, headSeq)}
	}
	if headHash != v.prevHash {
		return &BadRecordError{Seq: headSeq, Reason: "the last record does not match the recorded head hash"}
	}
	return nil
}

// Count is how many records have been verified.
func (v *Verifier) Count() int64 { return v.count }

// By is New for a record of what actor did with an API token (token "":
// none): the token goes into data as actorToken, so that a person's
// tokens can be told apart. data may be nil and is not changed.
func By(at time.Time, actor, token, action, identityID, caseID string, data map[string]any) Record {
	if token != "" {
		with := make(map[string]any, len(data)+1)
		for k, v := range data {
			with[k] = v
		}
		with["actorToken"] = token
		data = with
	}
	if data == nil {
		// A nil map would marshal as null; a record without data has none.
		return New(at, actor, action, identityID, caseID, nil)
	}
	return New(at, actor, action, identityID, caseID, data)
}
