-- Findings have a lifecycle: open, acknowledged (by an admin, with a
-- reason, until a time; then open again if still unresolved), resolved
-- (when the condition ended, with its cause). An acknowledgement is
-- current while ack_until > 0; reopening clears it (the audit trail keeps
-- every acknowledgement).
ALTER TABLE findings ADD COLUMN resolution TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN acked_by TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN ack_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN acked_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE findings ADD COLUMN ack_until BIGINT NOT NULL DEFAULT 0;
CREATE INDEX findings_state ON findings (resolved_at, ack_until, created_at);
