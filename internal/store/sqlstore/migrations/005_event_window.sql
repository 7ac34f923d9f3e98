-- The mass-change guard counts a source's recent leavers.
CREATE INDEX events_source_type ON events (source, type, received_at);
