-- The mass-change guard counts two things in a source's recent window:
-- its leaver and suspend events, and the revocations its cases planned.
-- Both live in a small part of the tables, so the indexes hold only that
-- part: a joiner (most events) writes no entry in either, and a count
-- reads only the events and cases it adds up. The queries repeat each
-- index's predicate literally so that the planners can use them.
--
-- The revocation count used to join every event of the source in the
-- window to its case. It now reads the revoking cases created in the
-- window (a case is created when its event is accepted) and keeps those
-- whose event is the source's.
DROP INDEX events_type_source;
CREATE INDEX events_narrowing ON events (source, received_at) WHERE type IN ('leaver', 'suspend');
CREATE INDEX cases_revoking ON cases (created_at) WHERE revocations > 0;
