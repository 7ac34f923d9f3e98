-- What is due: grants by their expiry (the expiry sweep, the count of
-- grants held past their expiry, the list of what is scheduled) and
-- events waiting for their effective time, of everyone and of one
-- identity (a later event supersedes them; the identity view lists them).
-- Each holds only the rows its queries read.
CREATE INDEX grants_expiring ON grants (expires_at) WHERE expires_at > 0;
CREATE INDEX events_scheduled ON events (effective_at) WHERE status = 'scheduled';
CREATE INDEX events_scheduled_identity ON events (identity_id, effective_at) WHERE status = 'scheduled';
-- A held import keeps the scheduled events it cancels (an HR end date
-- removed), as a JSON list of source event IDs, for its release.
ALTER TABLE holds ADD COLUMN cancel TEXT NOT NULL DEFAULT '';
