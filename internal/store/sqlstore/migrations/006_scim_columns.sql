-- More of a SCIM User that filters may name: title, userType, name parts,
-- and every email value (lower-cased, each between \x1f separators).
ALTER TABLE scim_resources ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE scim_resources ADD COLUMN user_type TEXT NOT NULL DEFAULT '';
ALTER TABLE scim_resources ADD COLUMN family_name TEXT NOT NULL DEFAULT '';
ALTER TABLE scim_resources ADD COLUMN given_name TEXT NOT NULL DEFAULT '';
ALTER TABLE scim_resources ADD COLUMN emails TEXT NOT NULL DEFAULT '';
