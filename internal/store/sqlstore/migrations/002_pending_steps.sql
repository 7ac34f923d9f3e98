-- Counting pending steps by system (the pending-revocations metric) reads
-- this index, not the steps table.
CREATE INDEX steps_status ON steps (status, system, action);
