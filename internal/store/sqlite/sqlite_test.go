package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlstore"
	"github.com/jml-dev/jml/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "jml.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestAuditMigrationKeepsTheChain: a database the audit_log layout left
// migrates to seals with its chain intact, and new records follow.
func TestAuditMigrationKeepsTheChain(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jml.db")
	db, err := sql.Open("sqlite", dsn(path, false, "FULL"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context, fn func(sqlstore.Conn) error) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(conn{tx: tx}); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	if err := sqlstore.MigrateUpTo(ctx, dialect, run, 10); err != nil {
		t.Fatal(err)
	}
	recs := storetest.ChainedRecords("i1", "i2", "i1")
	for _, r := range recs {
		if _, err := db.Exec("INSERT INTO audit_log (seq, at, actor, action, identity_id, case_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			r.Seq, r.At.UnixMicro(), r.Actor, r.Action, r.IdentityID, r.CaseID, string(r.Data), r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", recs[2].Seq, recs[2].Hash); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, audit.New(recs[0].At, "tok_1", "after", "i1", "", nil))
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := storetest.Verify(ctx, s); err != nil || n != 4 {
		t.Fatalf("Verify = %d, %v; want 4 records", n, err)
	}
	var got []string
	err = s.View(ctx, func(tx store.Tx) error {
		return tx.ScanAudit(ctx, "i1", func(r *audit.Record) error { got = append(got, fmt.Sprint(r.Seq, r.Action)); return nil })
	})
	if err != nil || fmt.Sprint(got) != "[1event.accepted 3event.accepted 4after]" {
		t.Fatalf("records of i1 = %v, %v", got, err)
	}
}
