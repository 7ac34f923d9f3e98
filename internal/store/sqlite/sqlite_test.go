package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

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
	storetest.CheckMigratedChain(t, s, 4, "[1 event.accepted 3 event.accepted 4 after]")
}
