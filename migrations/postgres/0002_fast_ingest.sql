-- Fast ingest: what a processed event writes and reads, cut to what it needs.

-- The longest booking a venue has had, so a table-and-time lookup can bound its index scan
-- from below (start >= opened - longest) and stay cheap however long the history grows.
ALTER TABLE venues ADD COLUMN longest_booking_ms BIGINT NOT NULL DEFAULT 0;
UPDATE venues SET longest_booking_ms = COALESCE(
    (SELECT MAX(end_at - start_at) FROM bookings WHERE bookings.venue_id = venues.id), 0);

-- A booking's tables live on the booking (a JSON list of normalised keys, like a sale's).
-- Table and time then filters by venue, time and table inside one index and reads only the
-- few bookings that pass (their status, which moves, stays out of the index).
ALTER TABLE bookings ADD COLUMN tables TEXT NOT NULL DEFAULT '[]';
UPDATE bookings SET tables = COALESCE(
    (SELECT json_agg(table_key ORDER BY position)::text FROM booking_tables t
     WHERE t.booking_id = bookings.id),
    '[]');
DROP TABLE booking_tables;
DROP INDEX bookings_venue_start;
CREATE INDEX bookings_venue_start ON bookings(venue_id, start_at) INCLUDE (end_at, tables);

-- A digest of a sale's lines and payments as last written: a snapshot that changes only its
-- state or totals (most UPDATE and CLOSE notifications) leaves them as they are.
ALTER TABLE sales ADD COLUMN items_digest TEXT;

-- A booking's sales and their states, for its status, without reading the sales.
DROP INDEX sales_booking;
CREATE INDEX sales_booking ON sales(booking_id) INCLUDE (state);

-- Most sales have no origin: only those that do are looked up by it.
DROP INDEX sales_origin;
CREATE INDEX sales_origin ON sales(venue_id, partner, origin_external_id)
    WHERE origin_external_id IS NOT NULL;

-- How a stored body is encoded: NULL for the bytes as received, 'lz4' for an LZ4 block
-- (prefixed with its decoded size) when that is smaller. Decoding gives back the exact bytes.
ALTER TABLE events ADD COLUMN body_encoding TEXT;

-- Only pending events are ever looked up by their next fetch time.
DROP INDEX events_due;
CREATE INDEX events_due ON events(next_attempt_at) WHERE outcome = 'pending';
