-- A finding about an account names its system: an identity can have an
-- account jml did not create in several systems at once, one finding
-- each. Findings about the identity as a whole have system ''.
ALTER TABLE findings ADD COLUMN system TEXT NOT NULL DEFAULT '';
