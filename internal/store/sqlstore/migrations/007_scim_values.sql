-- The values of SCIM multi-valued attributes (emails, phoneNumbers, roles,
-- a Group's members ...), one row each, lower-cased, for value filters
-- such as emails[type eq "work" and value co "@example.com"].
CREATE TABLE scim_values (
  resource_id   TEXT NOT NULL,
  attr          TEXT NOT NULL,
  type          TEXT NOT NULL DEFAULT '',
  value         TEXT NOT NULL DEFAULT '',
  display       TEXT NOT NULL DEFAULT '',
  primary_value INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX scim_values_resource ON scim_values (resource_id);
CREATE INDEX scim_values_attr_value ON scim_values (attr, value);
