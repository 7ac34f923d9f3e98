-- jml schema, version 1. {{blob}} is BLOB on SQLite and BYTEA on PostgreSQL,
-- {{serial}} an auto-incrementing integer key;
-- times are microseconds since the Unix epoch (0 = none) so both backends
-- store and compare them the same way.

CREATE TABLE identities (
  id           TEXT PRIMARY KEY,
  source       TEXT NOT NULL,
  external_id  TEXT NOT NULL,
  kind         TEXT NOT NULL,
  state        TEXT NOT NULL,
  display_name TEXT NOT NULL DEFAULT '',
  owner_id     TEXT NOT NULL DEFAULT '',
  manager_id   TEXT NOT NULL DEFAULT '',
  attributes   TEXT NOT NULL DEFAULT '{}',
  created_at   BIGINT NOT NULL,
  updated_at   BIGINT NOT NULL,
  UNIQUE (source, external_id)
);
CREATE INDEX identities_owner ON identities (owner_id);
CREATE INDEX identities_kind_state ON identities (kind, state);

CREATE TABLE events (
  id              TEXT PRIMARY KEY,
  source          TEXT NOT NULL,
  source_event_id TEXT NOT NULL,
  type            TEXT NOT NULL,
  identity_id     TEXT NOT NULL DEFAULT '',
  payload         TEXT NOT NULL,
  principal       TEXT NOT NULL,
  status          TEXT NOT NULL,
  case_id         TEXT NOT NULL DEFAULT '',
  error           TEXT NOT NULL DEFAULT '',
  received_at     BIGINT NOT NULL,
  effective_at    BIGINT NOT NULL,
  UNIQUE (source, source_event_id)
);

CREATE TABLE cases (
  id           TEXT PRIMARY KEY,
  event_id     TEXT NOT NULL,
  identity_id  TEXT NOT NULL,
  type         TEXT NOT NULL,
  status       TEXT NOT NULL,
  submitted_by TEXT NOT NULL,
  reason       TEXT NOT NULL DEFAULT '',
  created_at   BIGINT NOT NULL,
  updated_at   BIGINT NOT NULL,
  completed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX cases_identity ON cases (identity_id, created_at);

CREATE TABLE steps (
  case_id        TEXT NOT NULL,
  seq            INTEGER NOT NULL,
  identity_id    TEXT NOT NULL,
  action         TEXT NOT NULL,
  system         TEXT NOT NULL,
  entitlement    TEXT NOT NULL DEFAULT '',
  rule           TEXT NOT NULL DEFAULT '',
  credential_id  TEXT NOT NULL DEFAULT '',
  duration_ms    BIGINT NOT NULL DEFAULT 0,
  needs_approval INTEGER NOT NULL DEFAULT 0,
  reason         TEXT NOT NULL DEFAULT '',
  status         TEXT NOT NULL,
  attempts       INTEGER NOT NULL DEFAULT 0,
  last_error     TEXT NOT NULL DEFAULT '',
  result         TEXT NOT NULL DEFAULT '',
  decided_by     TEXT NOT NULL DEFAULT '',
  updated_at     BIGINT NOT NULL,
  PRIMARY KEY (case_id, seq)
);
CREATE INDEX steps_awaiting ON steps (identity_id, status);

CREATE TABLE grants (
  identity_id TEXT NOT NULL,
  entitlement TEXT NOT NULL,
  system      TEXT NOT NULL,
  reason      TEXT NOT NULL,
  case_id     TEXT NOT NULL,
  granted_at  BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL DEFAULT 0,
  approved_by TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (identity_id, entitlement)
);

CREATE TABLE credentials (
  id          TEXT PRIMARY KEY,
  identity_id TEXT NOT NULL,
  rule        TEXT NOT NULL,
  system      TEXT NOT NULL,
  type        TEXT NOT NULL,
  status      TEXT NOT NULL,
  prefix      TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  hash        {{blob}},
  sealed      {{blob}},
  revealed    INTEGER NOT NULL DEFAULT 0,
  issued_at   BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL DEFAULT 0,
  revoked_at  BIGINT NOT NULL DEFAULT 0,
  case_id     TEXT NOT NULL
);
CREATE UNIQUE INDEX credentials_hash ON credentials (hash);
CREATE INDEX credentials_identity ON credentials (identity_id, status);

CREATE TABLE accounts (
  identity_id TEXT NOT NULL,
  system      TEXT NOT NULL,
  status      TEXT NOT NULL,
  updated_at  BIGINT NOT NULL,
  PRIMARY KEY (identity_id, system)
);

CREATE TABLE findings (
  id          TEXT PRIMARY KEY,
  kind        TEXT NOT NULL,
  identity_id TEXT NOT NULL,
  message     TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  resolved_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX findings_identity ON findings (identity_id, kind, resolved_at);

CREATE TABLE audit_log (
  seq         BIGINT PRIMARY KEY,
  at          BIGINT NOT NULL,
  actor       TEXT NOT NULL,
  action      TEXT NOT NULL,
  identity_id TEXT NOT NULL DEFAULT '',
  case_id     TEXT NOT NULL DEFAULT '',
  data        TEXT NOT NULL DEFAULT '',
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
);
CREATE INDEX audit_identity ON audit_log (identity_id, seq);

-- Records written but not yet chained, where the backend chains them after
-- commit (PostgreSQL: see ARCHITECTURE.md). The sealer moves them into
-- audit_log in id order and deletes them here.
CREATE TABLE audit_pending (
  id          {{serial}} PRIMARY KEY,
  at          BIGINT NOT NULL,
  actor       TEXT NOT NULL,
  action      TEXT NOT NULL,
  identity_id TEXT NOT NULL DEFAULT '',
  case_id     TEXT NOT NULL DEFAULT '',
  data        TEXT NOT NULL DEFAULT ''
);

-- One row: the last appended record. Appends lock it, which serialises
-- them on PostgreSQL, and it lets verification detect a truncated tail.
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  BIGINT NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

-- Settings the database must agree on with every process using it, such as
-- the check value of the vault's master key.
CREATE TABLE jml_meta (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE api_tokens (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  role        TEXT NOT NULL,
  identity_id TEXT NOT NULL DEFAULT '',
  hash        {{blob}} NOT NULL,
  created_at  BIGINT NOT NULL,
  revoked_at  BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (hash);
