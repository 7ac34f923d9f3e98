package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
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
	db, run := rawDB(t, path)
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

// TestSecretPrefixMigration: version 16 rewrites step results that quoted
// a secret's first characters, wherever the case keeps its steps, and
// leaves credentials with only their public marker.
func TestSecretPrefixMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jml.db")
	db, run := rawDB(t, path)
	if err := sqlstore.MigrateUpTo(ctx, dialect, run, 15); err != nil {
		t.Fatal(err)
	}
	const stepsJSON = `[{"seq":1,"action":"issue_credential","result":"issued cred_a (jml_AbCdEfGh…)"},{"seq":2,"action":"issue_credential","result":"issued cred_b (Zz9_xYwV…), revoked cred_old"}]`
	for _, q := range []string{
		`INSERT INTO credentials (id, identity_id, rule, system, type, status, prefix, fingerprint, issued_at, case_id) VALUES ('cred_a', 'i1', 'k', 'vault', 'api_key', 'active', 'jml_AbCdEfGh', '00aa00aa00aa00aa', 1, 'case_X')`,
		`INSERT INTO credentials (id, identity_id, rule, system, type, status, prefix, fingerprint, issued_at, case_id) VALUES ('cred_b', 'i1', 'p', 'vault', 'password', 'active', 'Zz9_xYwV', '11bb11bb11bb11bb', 1, 'case_X')`,
		`INSERT INTO cases (id, event_id, identity_id, type, status, submitted_by, created_at, updated_at, steps_json) VALUES ('case_X', 'evt_Y', 'i1', 'joiner', 'completed', 't', 1, 1, '` + stepsJSON + `')`,
		`INSERT INTO events (id, source, source_event_id, type, identity_id, payload, principal, status, received_at, effective_at, case_steps) VALUES ('evt_X', 'hr', '1', 'joiner', 'i1', '{}', 't', 'applied', 1, 1, '` + stepsJSON + `')`,
		`INSERT INTO steps (case_id, seq, identity_id, action, system, status, result, updated_at) VALUES ('case_X', 1, 'i1', 'issue_credential', 'vault', 'done', 'issued cred_a (jml_AbCdEfGh…)', 1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := sqlstore.MigrateUpTo(ctx, dialect, run, 16); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, q := range []string{"SELECT steps_json FROM cases", "SELECT case_steps FROM events", "SELECT result FROM steps", "SELECT group_concat(marker || ':' || fingerprint) FROM credentials"} {
		var s string
		if err := db.QueryRow(q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		texts = append(texts, s)
	}
	db.Close()
	all := strings.Join(texts, "\n")
	for _, secret := range []string{"AbCdEfGh", "Zz9_xYwV"} {
		if strings.Contains(all, secret) {
			t.Fatalf("a secret's characters survived the migration:\n%s", all)
		}
	}
	for _, want := range []string{"issued cred_a (fingerprint 00aa00aa00aa00aa)", "issued cred_b (fingerprint 11bb11bb11bb11bb), revoked cred_old", "jml_:00aa00aa00aa00aa,:11bb11bb11bb11bb"} {
		if !strings.Contains(all, want) {
			t.Fatalf("migrated rows lack %q:\n%s", want, all)
		}
	}
}

// rawDB opens the SQLite file at path without the store, for tests that
// build a database as earlier versions left it, and a runner of
// migrations on it.
func rawDB(t *testing.T, path string) (*sql.DB, func(context.Context, func(sqlstore.Conn) error) error) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, false, "FULL"))
	if err != nil {
		t.Fatal(err)
	}
	return db, func(ctx context.Context, fn func(sqlstore.Conn) error) error {
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
}
