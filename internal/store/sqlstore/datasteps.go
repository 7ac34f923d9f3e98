package sqlstore

import (
	"context"
)

// dataSteps are the parts of migrations that SQL alone cannot say well,
// by version. A version's data step runs in the version's transaction,
// before its SQL file: it sees the schema the earlier versions left.
var dataSteps = map[int]func(ctx context.Context, c Conn) error{
	16: redactSecretPrefixes,
}

// redactSecretPrefixes rewrites the results of the steps that issued a
// credential, which quoted the secret's first characters ("issued cred_x
// (jml_AbCdEfGh…)"), to name its fingerprint instead ("issued cred_x
// (fingerprint 0011…)"). A case keeps its steps in one of three places
// (the steps table, cases.steps_json, or its event's case_steps); each is
// rewritten. Audit records are not: they are hash-chained, and the chain
// must keep verifying.
func redactSecretPrefixes(ctx context.Context, c Conn) error {
	type cred struct{ caseID, prefix, fingerprint string }
	creds, err := queryAll(ctx, c, func(scan func(...any) error) (cr cred, err error) {
		return cr, scan(&cr.caseID, &cr.prefix, &cr.fingerprint)
	},
		"SELECT case_id, prefix, fingerprint FROM credentials WHERE prefix <> '' AND prefix <> 'jml_'")
	if err != nil {
		return err
	}
	for _, cr := range creds {
		old, repl := "("+cr.prefix+"…)", "(fingerprint "+cr.fingerprint+")"
		if _, err := c.Exec(ctx, "UPDATE steps SET result = REPLACE(result, ?, ?) WHERE case_id = ?", old, repl, cr.caseID); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "UPDATE cases SET steps_json = REPLACE(steps_json, ?, ?) WHERE id = ? AND steps_json <> ''", old, repl, cr.caseID); err != nil {
			return err
		}
		if ev := eventIDOf(cr.caseID); ev != "" {
			if _, err := c.Exec(ctx, "UPDATE events SET case_steps = REPLACE(case_steps, ?, ?) WHERE id = ? AND case_steps <> ''", old, repl, ev); err != nil {
				return err
			}
		}
	}
	return nil
}
