-- When an event's raw payload was purged by the retention setting (NULL: still kept).
-- Purged events keep their outcome and what they touched, and are never replayed.
ALTER TABLE events ADD COLUMN purged_at INTEGER;
CREATE INDEX events_unpurged ON events(received_at) WHERE purged_at IS NULL;
