package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jml-dev/jml/internal/store/pgtest"
)

// TestHotQueriesUseTheirIndexes checks the plans PostgreSQL makes for the
// lookups on the accepting path, as generic plans of prepared statements
// (what pgx's statement cache gets) on tables whose statistics are those
// of a fresh database. An events probe once fell to an index on source
// alone and scanned every event of the source per lookup.
func TestHotQueriesUseTheirIndexes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	s, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query, args, index string
		fill                     string // rows to add (and analyze) first
	}{
		{name: "event by source and ID", index: "events_event_key",
			query: "SELECT id FROM events WHERE source = $1 AND source_event_id = $2", args: "('hr', 'e1')"},
		{name: "identity by source and external ID", index: "identities_source_external_id_key",
			query: "SELECT id FROM identities WHERE source = $1 AND external_id = $2", args: "('hr', 'u1')"},
		{name: "identities locked by source and external ID", index: "identities_source_external_id_key",
			query: "SELECT id FROM identities WHERE id IN (SELECT id FROM identities WHERE source = $1 AND external_id = $2 UNION ALL SELECT id FROM identities WHERE source = $3 AND external_id = $4) ORDER BY id FOR UPDATE", args: "('hr', 'u1', 'hr', 'u2')"},
		{name: "identities by owner", index: "identities_owner",
			fill:  ownersFill,
			query: "SELECT id FROM identities WHERE owner_id = $1 AND owner_id <> '' ORDER BY id LIMIT $2", args: "('idn_7', 1000)"},
		{name: "guard window", index: "events_narrowing",
			query: "SELECT COUNT(*) FROM events WHERE type IN ('leaver', 'suspend') AND source = $1 AND received_at >= $2", args: "('hr', 0)"},
		{name: "guard revocations", index: "cases_revoking",
			fill:  casesFill,
			query: guardRevocations, args: "(0, 'hr', 0, 'hr')"},
		// Cases stored in their events' rows (migration 014), among many
		// events whose case revokes nothing.
		{name: "guard revocations in events", index: "events_revoking",
			fill:  eventCasesFill,
			query: guardRevocations, args: "(0, 'hr', 0, 'hr')"},
		{name: "cases of an identity", index: "cases_identity",
			query: casesOfIdentity, args: "('idn_7', 'idn_7', 100)"},
		{name: "cases of an identity in events", index: "events_cases",
			query: casesOfIdentity, args: "('idn_7', 'idn_7', 100)"},
		// The partial indexes on steps: with many done steps and a few
		// waiting ones, the waiting ones are found through them.
		{name: "open steps of an identity", index: "steps_waiting",
			fill:  stepsFill,
			query: "SELECT case_id FROM steps WHERE identity_id = $1 AND status IN ('pending', 'awaiting_approval')", args: "('id-7')"},
		{name: "pending steps by system", index: "steps_pending",
			query: "SELECT system, action, COUNT(*) FROM steps WHERE status = 'pending' GROUP BY system, action", args: ""},
		// The sealer reads from its place on, every 10 ms, however long
		// the log: a scan of the whole table would grow with it.
		{name: "unsealed audit records", index: "audit_records_pkey",
			fill:  auditFill,
			query: "SELECT id FROM audit_records WHERE (xid, id) > ($1, $2) AND xid < " + dialect.Horizon + " ORDER BY xid, id LIMIT $3", args: "(1000, 19990, 1000)"},
		{name: "audit records of an identity", index: "audit_records_identity",
			query: "SELECT id FROM audit_records WHERE identity_id = $1 AND (xid, id) <= ($2, $3) ORDER BY xid, id", args: "('id-7', 1000, 20000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fill != "" {
				if _, err := conn.Exec(ctx, tc.fill); err != nil {
					t.Fatal(err)
				}
			}
			name := "q" + strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "_"), "-", "_")
			if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+tc.query); err != nil {
				t.Fatal(err)
			}
			var plan strings.Builder
			rows, err := conn.Query(ctx, "EXPLAIN EXECUTE "+name+tc.args, pgx.QueryExecModeSimpleProtocol)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan.WriteString(line + "\n")
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan.String(), " "+tc.index+" ") {
				t.Errorf("plan does not use %s:\n%s", tc.index, plan.String())
			}
		})
	}
}

// stepsFill adds 20 000 done steps and 20 waiting ones over 2 000
// identities, then analyzes.
const stepsFill = `INSERT INTO steps (case_id, seq, identity_id, action, system, entitlement, rule, credential_id, duration_ms, needs_approval, reason, status, attempts, last_error, result, decided_by, updated_at)
SELECT 'case-' || i, 0, 'id-' || (i % 2000), 'grant', 'vault', 'e', '', '', 0, 0, '', CASE WHEN i % 1000 = 7 THEN 'pending' ELSE 'done' END, 0, '', '', '', 0
FROM generate_series(1, 20000) i;
ANALYZE steps`

// auditFill adds 20 000 audit records over 2 000 identities and 1 000
// transactions, then analyzes.
const auditFill = `INSERT INTO audit_records (id, xid, at, actor, action, identity_id)
SELECT i, i / 20, 0, 'a', 'x', 'id-' || (i % 2000) FROM generate_series(1, 20000) i;
ANALYZE audit_records`

// ownersFill adds 20 000 people without an owner and 2 000 pipelines
// owned by 200 of them, then analyzes.
const ownersFill = `INSERT INTO identities (id, source, external_id, kind, state, display_name, owner_id, manager_id, attributes, created_at, updated_at)
SELECT 'idn_' || i, 'hr', 'u' || i, CASE WHEN i > 20000 THEN 'pipeline' ELSE 'human' END, 'active', '', CASE WHEN i > 20000 THEN 'idn_' || (i % 200) ELSE '' END, '', '{}', 0, 0
FROM generate_series(1, 22000) i;
ANALYZE identities`

// guardRevocations and casesOfIdentity are sqlstore's CountRevocations
// and ListCases, placeholders numbered.
const (
	guardRevocations = `SELECT (SELECT COALESCE(SUM(c.revocations), 0) FROM cases c JOIN events e ON e.id = c.event_id
WHERE c.revocations > 0 AND c.created_at >= $1 AND e.source = $2)
+ (SELECT COALESCE(SUM(case_revocations), 0) FROM events WHERE case_revocations > 0 AND case_at >= $3 AND source = $4)`
	casesOfIdentity = "SELECT id, created_at FROM cases WHERE identity_id = $1 UNION ALL SELECT 'case_' || substr(id, 5), case_at FROM events WHERE identity_id = $2 AND case_steps <> '' ORDER BY created_at DESC, id DESC LIMIT $3"
)

// eventCasesFill adds 20 000 events whose cases live in their rows, 200
// of them revoking, and 20 000 without a case, then analyzes.
const eventCasesFill = `INSERT INTO events (id, source, source_event_id, type, identity_id, payload, principal, status, case_id, error, received_at, effective_at, case_steps, case_revocations, case_at)
SELECT 'evt_' || i, 'hr', 'e' || i, CASE WHEN i % 100 = 0 THEN 'leaver' ELSE 'joiner' END, 'idn_' || (i % 20000), '{}', 'tok', 'applied', 'case_' || i, '', i, i,
  CASE WHEN i <= 20000 THEN '[]' ELSE '' END, CASE WHEN i <= 20000 AND i % 100 = 0 THEN 3 ELSE 0 END, CASE WHEN i <= 20000 THEN i ELSE 0 END
FROM generate_series(1, 40000) i;
ANALYZE events`

// casesFill adds 20 000 joiner cases that revoke nothing and 200 that
// revoke, then analyzes.
const casesFill = `INSERT INTO cases (id, event_id, identity_id, type, status, submitted_by, reason, created_at, updated_at, completed_at, revocations)
SELECT 'case_' || i, 'evt_' || i, 'idn_' || i, CASE WHEN i % 100 = 0 THEN 'leaver' ELSE 'joiner' END, 'completed', 'hr', '', i, i, i, CASE WHEN i % 100 = 0 THEN 3 ELSE 0 END
FROM generate_series(1, 20000) i;
ANALYZE cases`
