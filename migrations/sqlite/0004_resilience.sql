-- One row a readiness probe rewrites: a write that commits proves the store can take writes
-- now (the writer alive, the disk not full, the file not locked by another process).
CREATE TABLE store_heartbeat (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
-- Refused deliveries keep only the first few KiB of their body: how long it really was, and
-- whether what is stored is cut short (its SHA-256 is always of the whole body).
ALTER TABLE events ADD COLUMN body_bytes INTEGER;
ALTER TABLE events ADD COLUMN body_truncated INTEGER NOT NULL DEFAULT 0;
