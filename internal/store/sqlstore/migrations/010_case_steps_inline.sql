-- A case whose every step is final when it is stored (a joiner whose
-- steps all ran in the accepting transaction, most of all) keeps its steps
-- in steps_json, one row instead of one per step; those steps never change
-- again. Cases with steps still to run keep them in the steps table, where
-- they are updated and found by status.
--
-- revocations is the number of revoke and disable steps the case planned,
-- which the mass-change guard adds up; it replaces a join with steps.
ALTER TABLE cases ADD COLUMN steps_json TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN revocations INTEGER NOT NULL DEFAULT 0;
UPDATE cases SET revocations = (SELECT COUNT(*) FROM steps s WHERE s.case_id = cases.id AND s.action IN ('revoke_grant', 'revoke_credential', 'disable_account'));
-- The guard now joins cases from events.case_id, by primary key.
DROP INDEX cases_event;
