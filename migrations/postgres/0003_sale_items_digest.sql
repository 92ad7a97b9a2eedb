-- A digest of a sale's lines and payments as last written: a snapshot that changes only its
-- state or totals (most UPDATE and CLOSE notifications) leaves them as they are.
ALTER TABLE sales ADD COLUMN items_digest TEXT;

-- Only pending events are ever looked up by their next fetch time.
DROP INDEX events_due;
CREATE INDEX events_due ON events(next_attempt_at) WHERE outcome = 'pending';
