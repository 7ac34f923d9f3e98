package retention

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// TestLeaverSetsDeletionTimers runs the participant on a real store's
// transaction, with no engine, and reads the timers River stores: one per
// account not deleted in a system with deleteAfter, due that long after
// the departure; none for a system without it, a deleted account, or an
// identity that does not leave.
func TestLeaverSetsDeletionTimers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jml.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pol, err := policy.Parse("p.yaml", []byte(`systems:
  - {name: crm, type: webhook, config: {url: "http://127.0.0.1:1/"}, deleteAfter: 30d}
  - {name: wiki, type: webhook, config: {url: "http://127.0.0.1:1/"}, deleteAfter: 7d}
  - {name: chat, type: webhook, config: {url: "http://127.0.0.1:1/"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	accounts := []identity.Account{{System: "crm", Status: identity.AccountActive}, {System: "wiki", Status: identity.AccountDeleted}, {System: "chat", Status: identity.AccountActive}}
	for _, state := range []identity.State{identity.Suspended, identity.Departed} {
		after := &identity.Identity{ID: "idn_ada", State: state, UpdatedAt: t0}
		if err := s.Update(ctx, func(tx store.Tx) error {
			return Participant{}.Accept(ctx, &accept.Change{Tx: tx, Policy: pol, Now: t0, After: after, Accounts: accounts})
		}); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT json(args) FROM river_job WHERE kind = ?", DeleteAccountArgs{}.Kind())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []DeleteAccountArgs
	for rows.Next() {
		var raw string
		var a DeleteAccountArgs
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if len(got) != 1 || got[0].System != "crm" || got[0].IdentityID != "idn_ada" || !got[0].DepartedAt.Equal(t0) {
		t.Fatalf("timers = %+v, want crm's alone, for the departure", got)
	}
}
