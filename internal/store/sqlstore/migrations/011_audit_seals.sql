-- Audit records are written once, where the writing transaction puts them,
-- and chained by seals (see ARCHITECTURE.md, "Audit chain").
--
-- Before: records went to audit_pending (PostgreSQL) and the sealer copied
-- each into audit_log with its seq and hashes, then deleted it: every
-- record was written twice and deleted once. Now a record stays in
-- audit_records; a seal row chains a run of them: the first seq, the
-- records' ids in chain order, and each record's hash (the hash is
-- computed exactly as before, over seq, fields and previous hash, so the
-- chain of an existing database carries over unchanged).
--
-- Chain order is (xid, id): xid is the writing transaction's ID on
-- PostgreSQL (0 on SQLite, whose single writer commits in id order). A
-- sealer takes records only from transactions older than every running
-- one, so no record can still appear before the ones it seals.
-- On SQLite xid is always 0, so chain order is the rowid's and its
-- indexes leave xid out.
--@sqlite CREATE TABLE audit_records (id INTEGER PRIMARY KEY, xid BIGINT NOT NULL DEFAULT 0, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, identity_id TEXT NOT NULL DEFAULT '', case_id TEXT NOT NULL DEFAULT '', data TEXT NOT NULL DEFAULT '');
--@sqlite CREATE INDEX audit_records_identity ON audit_records (identity_id, id);
--@postgres CREATE TABLE audit_records (id BIGSERIAL NOT NULL, xid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, identity_id TEXT NOT NULL DEFAULT '', case_id TEXT NOT NULL DEFAULT '', data TEXT NOT NULL DEFAULT '', PRIMARY KEY (xid, id));
--@postgres CREATE INDEX audit_records_identity ON audit_records (identity_id, xid, id);

CREATE TABLE audit_seals (
  first_seq BIGINT PRIMARY KEY,
  first_xid BIGINT NOT NULL,
  first_id  BIGINT NOT NULL,
  -- the sealed records' ids in chain order, comma-separated
  ids       TEXT NOT NULL,
  -- the hash of the record before first_seq ('' for the first record)
  prev_hash TEXT NOT NULL,
  -- each sealed record's hash, hex, concatenated in chain order
  hashes    TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_seals_first ON audit_seals (first_xid, first_id);

-- The chained records move over with their seq as id, one seal each.
INSERT INTO audit_records (id, xid, at, actor, action, identity_id, case_id, data)
  SELECT seq, 0, at, actor, action, identity_id, case_id, data FROM audit_log;
INSERT INTO audit_seals (first_seq, first_xid, first_id, ids, prev_hash, hashes)
  SELECT seq, 0, seq, CAST(seq AS TEXT), prev_hash, hash FROM audit_log;
-- Records not yet chained (PostgreSQL) follow them, to be sealed next.
INSERT INTO audit_records (id, xid, at, actor, action, identity_id, case_id, data)
  SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_log) + id, 0, at, actor, action, identity_id, case_id, data FROM audit_pending;
--@postgres SELECT setval(pg_get_serial_sequence('audit_records', 'id'), GREATEST((SELECT MAX(id) FROM audit_records), 1));

-- The head also keeps the sealer's place: the (xid, id) of the last
-- sealed record. Every record after it is not sealed yet.
ALTER TABLE audit_head ADD COLUMN sealed_xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN sealed_id BIGINT NOT NULL DEFAULT 0;
UPDATE audit_head SET sealed_id = seq;

DROP TABLE audit_pending;
DROP TABLE audit_log;
