-- The mass-change guard counts the revocations a source's recent events
-- planned: events by source and time, then their cases.
CREATE INDEX cases_event ON cases (event_id);
