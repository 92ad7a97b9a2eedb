-- A booking's tables live on the booking (a JSON list of normalised keys, like a sale's), so
-- the table-and-time lookup reads one index range: bookings_venue_start covers every column
-- matching needs.
ALTER TABLE bookings ADD COLUMN tables TEXT NOT NULL DEFAULT '[]';
UPDATE bookings SET tables = COALESCE(
    (SELECT json_agg(table_key ORDER BY position)::text FROM booking_tables t
     WHERE t.booking_id = bookings.id),
    '[]');
DROP TABLE booking_tables;
DROP INDEX bookings_venue_start;
CREATE INDEX bookings_venue_start ON bookings(venue_id, start_at)
    INCLUDE (end_at, status, reference, tables);

-- A booking's sales and their states, for its status, without reading the sales.
DROP INDEX sales_booking;
CREATE INDEX sales_booking ON sales(booking_id) INCLUDE (state);

-- Most sales have no origin: only those that do are looked up by it.
DROP INDEX sales_origin;
CREATE INDEX sales_origin ON sales(venue_id, partner, origin_external_id)
    WHERE origin_external_id IS NOT NULL;
