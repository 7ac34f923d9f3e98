-- Only identities with an owner (every non-human kind) are found by owner:
-- the leaver of an owner lists what it owns. People have none, and
-- indexing their empty owner cost every human joiner an index entry that
-- no query reads. Queries by owner repeat the predicate so that the
-- planners (PostgreSQL's generic plans, SQLite's) can use the index.
DROP INDEX identities_owner;
CREATE INDEX identities_owner ON identities (owner_id) WHERE owner_id <> '';
