-- Indexes the accepting path can rely on, and fewer of them.
--
-- Events. PostgreSQL plans a prepared statement once, generically, and
-- keeps the plan until the table is analyzed; planned while the table is
-- nearly empty it cannot tell apart two indexes that both begin with the
-- column a query binds. 005's window index and the unique (source,
-- source_event_id) both began with source: the duplicate check by (source,
-- source_event_id) was planned on the window index and scanned every event
-- of the source per lookup, and the guard's window count could fall to the
-- unique index the same way. So no two indexes a hot query may use share
-- a first column: the window index begins with type (the guard's queries
-- name the types they count), and on PostgreSQL the unique key begins with
-- source_event_id. (SQLite cannot drop a table's unique constraint, and its
-- planner prefers the index matching more equality columns anyway.)
DROP INDEX events_source_type;
CREATE INDEX events_type_source ON events (type, source, received_at);
--@postgres ALTER TABLE events ADD CONSTRAINT events_event_key UNIQUE (source_event_id, source);
--@postgres ALTER TABLE events DROP CONSTRAINT events_source_source_event_id_key;

-- Steps are looked up by status only while they wait (pending or awaiting
-- approval); most steps are done the moment they are written (built-in
-- ones in the accepting transaction). Partial indexes hold only the
-- waiting ones, so a step costs no entries in them once it is done. The
-- queries repeat each index's predicate literally so that the planners
-- (PostgreSQL's and SQLite's) can use them.
DROP INDEX steps_awaiting;
CREATE INDEX steps_waiting ON steps (identity_id) WHERE status IN ('pending', 'awaiting_approval');
DROP INDEX steps_status;
CREATE INDEX steps_pending ON steps (system, action) WHERE status = 'pending';
