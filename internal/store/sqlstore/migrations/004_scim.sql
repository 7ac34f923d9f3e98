-- Resources provisioned over SCIM, as the client sees them. A User's id is
-- also its identity's external ID in the source.
CREATE TABLE scim_resources (
  id            TEXT PRIMARY KEY,
  source        TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  user_name     TEXT NOT NULL,
  external_id   TEXT NOT NULL DEFAULT '',
  display_name  TEXT NOT NULL DEFAULT '',
  active        INTEGER NOT NULL,
  data          TEXT NOT NULL,
  version       BIGINT NOT NULL,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL,
  UNIQUE (source, resource_type, user_name)
);
CREATE INDEX scim_resources_external ON scim_resources (source, resource_type, external_id);
