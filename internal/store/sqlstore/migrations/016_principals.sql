-- A source token is bound to one source: the events it may submit are that
-- source's. Until now a source token's name stood for its source, so the
-- existing ones keep it.
ALTER TABLE api_tokens ADD COLUMN source TEXT NOT NULL DEFAULT '';
UPDATE api_tokens SET source = name WHERE role = 'source';
-- A person's tokens are found by their identity when the person leaves.
CREATE INDEX api_tokens_identity ON api_tokens (identity_id) WHERE identity_id <> '';
-- No part of a secret is kept for display: a credential keeps only its
-- public marker (jml_ for API keys, nothing for passwords) next to its
-- fingerprint. Step results that quoted the first characters are rewritten
-- by this version's Go step (redactSecretPrefixes); audit records already
-- chained keep what they say.
ALTER TABLE credentials RENAME COLUMN prefix TO marker;
UPDATE credentials SET marker = 'jml_' WHERE type = 'api_key';
UPDATE credentials SET marker = '' WHERE type <> 'api_key';
