-- A case that completes on acceptance (a joiner whose steps all ran in the
-- accepting transaction, most of all) can live in its event's row: its ID
-- is the event's under the case prefix (store.CaseIDFor), and what the
-- event's columns do not already say is its steps, its revocation count
-- and the moment it was opened and completed. That saves a row, a primary
-- key entry and a statement per such event; a case that still has steps to
-- run keeps its row in cases, where it is updated.
--
-- events_cases finds an identity's cases stored so (the timeline), and
-- events_revoking those that revoke (the mass-change guard): each holds
-- only those rows, and the queries repeat its predicate literally.
ALTER TABLE events ADD COLUMN case_steps TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN case_revocations INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN case_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX events_cases ON events (identity_id, case_at) WHERE case_steps <> '';
CREATE INDEX events_revoking ON events (case_at) WHERE case_revocations > 0;
