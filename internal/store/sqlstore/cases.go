package sqlstore

// Tx's part for cases and steps.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

const caseCols = "id, event_id, identity_id, type, status, submitted_by, reason, created_at, updated_at, completed_at"

func scanCase(scan func(...any) error) (*cases.Case, error) {
	var c cases.Case
	var typ, status string
	var created, updated, completed int64
	if err := scan(&c.ID, &c.EventID, &c.IdentityID, &typ, &status, &c.SubmittedBy, &c.Reason, &created, &updated, &completed); err != nil {
		return nil, err
	}
	c.Type, c.Status = identity.EventType(typ), cases.Status(status)
	c.CreatedAt, c.UpdatedAt, c.CompletedAt = fromMicros(created), fromMicros(updated), fromMicros(completed)
	return &c, nil
}

func (t *Tx) InsertCase(ctx context.Context, c *cases.Case) error {
	revocations := c.Revocations()
	inline := ""
	if c.Status == cases.Completed && len(c.Steps) > 0 {
		var err error
		if inline, err = encodeSteps(c); err != nil {
			return fmt.Errorf("insert case: %w", err)
		}
	}
	if err := t.write(ctx, "INSERT INTO cases ("+caseCols+", steps_json, revocations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.EventID, c.IdentityID, string(c.Type), string(c.Status), c.SubmittedBy, c.Reason, micros(c.CreatedAt), micros(c.UpdatedAt), micros(c.CompletedAt),
		inline, revocations); err != nil {
		return fmt.Errorf("insert case: %w", err)
	}
	for i := range c.Steps {
		c.Steps[i].CaseID = c.ID
	}
	if inline != "" {
		return nil
	}
	// Steps go in multi-row inserts (one round trip for a whole plan), in
	// chunks that stay under SQLite's bound-parameter limit.
	const chunk = 500
	for start := 0; start < len(c.Steps); start += chunk {
		n := min(chunk, len(c.Steps)-start)
		args := make([]any, 0, n*17)
		for i := start; i < start+n; i++ {
			s := &c.Steps[i]
			s.CaseID = c.ID
			args = append(args, c.ID, s.Seq, c.IdentityID, string(s.Action), s.System, s.Entitlement, s.Rule, s.CredentialID, s.Duration.Milliseconds(), boolInt(s.NeedsApproval),
				s.Reason, string(s.Status), s.Attempts, s.LastError, s.Result, s.DecidedBy, micros(s.UpdatedAt))
		}
		if err := t.write(ctx, "INSERT INTO steps ("+stepCols+") VALUES "+placeholders(n, 17), args...); err != nil {
			return fmt.Errorf("insert steps: %w", err)
		}
	}
	return nil
}

const stepCols = "case_id, seq, identity_id, action, system, entitlement, rule, credential_id, duration_ms, needs_approval, reason, status, attempts, last_error, result, decided_by, updated_at"

func scanStep(scan func(...any) error) (*cases.Step, error) {
	var s cases.Step
	var identityID, action, status string
	var durMS, updated int64
	var needs int
	if err := scan(&s.CaseID, &s.Seq, &identityID, &action, &s.System, &s.Entitlement, &s.Rule, &s.CredentialID, &durMS, &needs, &s.Reason, &status, &s.Attempts, &s.LastError, &s.Result, &s.DecidedBy, &updated); err != nil {
		return nil, err
	}
	s.Action, s.Status = plan.Action(action), cases.StepStatus(status)
	s.Duration = time.Duration(durMS) * time.Millisecond
	s.NeedsApproval = needs != 0
	s.UpdatedAt = fromMicros(updated)
	return &s, nil
}

// stepJSON is a step in cases.steps_json: the steps table's columns, with
// the same precision (milliseconds, microseconds), so that a case reads
// back alike from either.
type stepJSON struct {
	Seq           int    `json:"seq"`
	Action        string `json:"action"`
	System        string `json:"system"`
	Entitlement   string `json:"entitlement,omitempty"`
	Rule          string `json:"rule,omitempty"`
	CredentialID  string `json:"credentialId,omitempty"`
	DurationMS    int64  `json:"durationMs,omitempty"`
	NeedsApproval bool   `json:"needsApproval,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Status        string `json:"status"`
	Attempts      int    `json:"attempts,omitempty"`
	LastError     string `json:"lastError,omitempty"`
	Result        string `json:"result,omitempty"`
	DecidedBy     string `json:"decidedBy,omitempty"`
	UpdatedAt     int64  `json:"updatedAt"`
}

func stepsToJSON(steps []cases.Step) []stepJSON {
	out := make([]stepJSON, len(steps))
	for i, s := range steps {
		out[i] = stepJSON{Seq: s.Seq, Action: string(s.Action), System: s.System, Entitlement: s.Entitlement, Rule: s.Rule, CredentialID: s.CredentialID,
			DurationMS: s.Duration.Milliseconds(), NeedsApproval: s.NeedsApproval, Reason: s.Reason, Status: string(s.Status), Attempts: s.Attempts,
			LastError: s.LastError, Result: s.Result, DecidedBy: s.DecidedBy, UpdatedAt: micros(s.UpdatedAt)}
	}
	return out
}

// encodeSteps is c's steps as one column holds them (cases.steps_json,
// events.case_steps); each step is marked as c's.
func encodeSteps(c *cases.Case) (string, error) {
	for i := range c.Steps {
		c.Steps[i].CaseID = c.ID
	}
	b, err := json.Marshal(stepsToJSON(c.Steps))
	return string(b), err
}

func stepsFromJSON(caseID string, js []stepJSON) []cases.Step {
	out := make([]cases.Step, len(js))
	for i, j := range js {
		out[i] = cases.Step{CaseID: caseID, Seq: j.Seq, Step: plan.Step{Action: plan.Action(j.Action), System: j.System, Entitlement: j.Entitlement, Rule: j.Rule,
			CredentialID: j.CredentialID, Duration: time.Duration(j.DurationMS) * time.Millisecond, NeedsApproval: j.NeedsApproval, Reason: j.Reason},
			Status: cases.StepStatus(j.Status), Attempts: j.Attempts, LastError: j.LastError, Result: j.Result, DecidedBy: j.DecidedBy, UpdatedAt: fromMicros(j.UpdatedAt)}
	}
	return out
}

func (t *Tx) steps(ctx context.Context, where string, args ...any) ([]cases.Step, error) {
	return queryAll(ctx, t.c, byValue(scanStep), "SELECT "+stepCols+" FROM steps WHERE "+where+" ORDER BY case_id, seq", args...)
}

// eventCaseCols are the case an event's row holds (migration 014), in
// caseCols' order: completed, with no reason, created, updated and
// completed at case_at. Queries that read them state events_cases'
// predicate, eventCaseStored, literally. Only an event whose ID is "evt_"
// and a ULID holds a case, "case_" and the same ULID (see inEventRow).
const (
	eventCaseCols   = "'case_' || substr(id, 5), id, identity_id, type, '" + string(cases.Completed) + "', principal, '', case_at, case_at, case_at"
	eventCaseStored = "case_steps <> ''"
)

func (t *Tx) GetCase(ctx context.Context, id string) (*cases.Case, error) {
	var inline string
	scan := func(scan func(...any) error) (*cases.Case, error) {
		return scanCase(func(dest ...any) error { return scan(append(dest, &inline)...) })
	}
	c, err := one(ctx, t.c, "case", id, scan, "SELECT "+caseCols+", steps_json FROM cases WHERE id = ?", id)
	if store.IsNotFound(err) && eventIDOf(id) != "" {
		// A case completed on acceptance may live in its event's row.
		c, err = one(ctx, t.c, "case", id, scan, "SELECT "+eventCaseCols+", case_steps FROM events WHERE id = ? AND "+eventCaseStored, eventIDOf(id))
	}
	if err != nil {
		return nil, err
	}
	if inline != "" {
		var js []stepJSON
		if err := json.Unmarshal([]byte(inline), &js); err != nil {
			return nil, fmt.Errorf("case %s steps: %w", id, err)
		}
		c.Steps = stepsFromJSON(id, js)
		return c, nil
	}
	c.Steps, err = t.steps(ctx, "case_id = ?", id)
	if c.Steps == nil {
		c.Steps = []cases.Step{}
	}
	return c, err
}

func (t *Tx) UpdateCase(ctx context.Context, c *cases.Case) error {
	n, err := t.c.Exec(ctx, "UPDATE cases SET status = ?, reason = ?, updated_at = ?, completed_at = ? WHERE id = ?",
		string(c.Status), c.Reason, micros(c.UpdatedAt), micros(c.CompletedAt), c.ID)
	if err == nil && n == 0 {
		return notFound("case", c.ID)
	}
	return err
}

func (t *Tx) UpdateStep(ctx context.Context, s *cases.Step) error {
	n, err := t.c.Exec(ctx, "UPDATE steps SET credential_id = ?, status = ?, attempts = ?, last_error = ?, result = ?, decided_by = ?, updated_at = ? WHERE case_id = ? AND seq = ?",
		s.CredentialID, string(s.Status), s.Attempts, s.LastError, s.Result, s.DecidedBy, micros(s.UpdatedAt), s.CaseID, s.Seq)
	if err == nil && n == 0 {
		return notFound("step", fmt.Sprintf("%s/%d", s.CaseID, s.Seq))
	}
	return err
}

func (t *Tx) ListOpenSteps(ctx context.Context, identityID string) ([]cases.Step, error) {
	return t.steps(ctx, "identity_id = ? AND "+stepsWaiting, identityID)
}

// The partial indexes on steps (migration 009) hold only waiting steps;
// a planner uses one only when the query states its predicate literally,
// so these are spelled out rather than bound. They are constants of the
// code, never input.
const (
	stepsWaiting = "status IN ('" + string(cases.StepPending) + "', '" + string(cases.StepAwaitingApproval) + "')"
	stepsPending = "status = '" + string(cases.StepPending) + "'"
)

func (t *Tx) ListPendingCases(ctx context.Context, limit int) ([]string, error) {
	return queryAll(ctx, t.c, func(scan func(...any) error) (id string, err error) { return id, scan(&id) },
		"SELECT DISTINCT case_id FROM steps WHERE "+stepsPending+" ORDER BY case_id LIMIT ?", limit)
}

func (t *Tx) CountPendingSteps(ctx context.Context) ([]store.StepCount, error) {
	return queryAll(ctx, t.c, func(scan func(...any) error) (c store.StepCount, err error) {
		return c, scan(&c.System, &c.Action, &c.Count)
	},
		"SELECT system, action, COUNT(*) FROM steps WHERE "+stepsPending+" GROUP BY system, action ORDER BY system, action")
}

func (t *Tx) ListCases(ctx context.Context, identityID string, limit int) ([]cases.Case, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	// Cases in their own rows, and those completed on acceptance that live
	// in their event's row.
	return queryAll(ctx, t.c, byValue(scanCase), "SELECT "+caseCols+" FROM cases WHERE identity_id = ? UNION ALL SELECT "+eventCaseCols+" FROM events WHERE identity_id = ? AND "+eventCaseStored+
		" ORDER BY created_at DESC, id DESC LIMIT ?", identityID, identityID, limit)
}

func (t *Tx) FindCases(ctx context.Context, f store.CaseFilter) ([]cases.Case, error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	// Both halves take the same conditions, on their own columns; values
	// are bound, never SQL text. A case in its event's row is completed on
	// acceptance and is named by its event's ULID, so the cursor on the
	// case ID is the same cursor on the event ID.
	type half struct {
		where []string
		args  []any
	}
	var rows, inEvents half
	both := func(cond string, args ...any) {
		rows.where, rows.args = append(rows.where, cond), append(rows.args, args...)
		inEvents.where, inEvents.args = append(inEvents.where, cond), append(inEvents.args, args...)
	}
	if f.Status != "" {
		rows.where, rows.args = append(rows.where, "status = ?"), append(rows.args, string(f.Status))
	}
	if f.Type != "" {
		both("type = ?", string(f.Type))
	}
	if f.IdentityID != "" {
		both("identity_id = ?", f.IdentityID)
	}
	if f.VisibleTo != "" {
		both("identity_id IN (SELECT id FROM identities WHERE id = ? OR owner_id = ? OR manager_id = ?)", f.VisibleTo, f.VisibleTo, f.VisibleTo)
	}
	if !f.Since.IsZero() {
		rows.where, rows.args = append(rows.where, "created_at >= ?"), append(rows.args, micros(f.Since))
		inEvents.where, inEvents.args = append(inEvents.where, "case_at >= ?"), append(inEvents.args, micros(f.Since))
	}
	if f.After != "" {
		rows.where, rows.args = append(rows.where, "id < ?"), append(rows.args, f.After)
		inEvents.where, inEvents.args = append(inEvents.where, "id < ?"), append(inEvents.args, eventIDOf(f.After))
	}
	q := "SELECT " + caseCols + " FROM cases"
	if len(rows.where) > 0 {
		q += " WHERE " + strings.Join(rows.where, " AND ")
	}
	args := rows.args
	// Cases in their event's row are all completed; a cursor that is not
	// a case ID has no event half either.
	if (f.Status == "" || f.Status == cases.Completed) && (f.After == "" || eventIDOf(f.After) != "") {
		q += " UNION ALL SELECT " + eventCaseCols + " FROM events WHERE " + strings.Join(append([]string{eventCaseStored}, inEvents.where...), " AND ")
		args = append(args, inEvents.args...)
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	return queryAll(ctx, t.c, byValue(scanCase), q, args...)
}
