-- One row a readiness probe rewrites: a write that commits proves the store can take writes
-- now (the pool able to commit, the database not read-only).
CREATE TABLE store_heartbeat (id BIGINT PRIMARY KEY, at BIGINT NOT NULL);
-- Refused deliveries keep only the first few KiB of their body: how long it really was, and
-- whether what is stored is cut short (its SHA-256 is always of the whole body).
ALTER TABLE events ADD COLUMN body_bytes BIGINT;
ALTER TABLE events ADD COLUMN body_truncated BIGINT NOT NULL DEFAULT 0;
