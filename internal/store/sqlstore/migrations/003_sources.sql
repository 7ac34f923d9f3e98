-- The last snapshot imported from each file-fed source (HR), and batches
-- the mass-change guard held for an administrator.
CREATE TABLE source_snapshots (
  source     TEXT PRIMARY KEY,
  data       {{blob}} NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE holds (
  id         TEXT PRIMARY KEY,
  source     TEXT NOT NULL,
  reason     TEXT NOT NULL,
  events     TEXT NOT NULL,
  snapshot   {{blob}},
  status     TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  decided_by TEXT NOT NULL DEFAULT '',
  decided_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX holds_status ON holds (status, created_at);
