-- How a stored body is encoded: NULL for the bytes as received, 'lz4' for an LZ4 block
-- (prefixed with its decoded size) when that is smaller. Decoding gives back the exact bytes.
ALTER TABLE events ADD COLUMN body_encoding TEXT;

-- Table and time filters candidates by venue, time and table inside the index; a booking's
-- status (which moves) is read from the few rows that pass.
DROP INDEX bookings_venue_start;
CREATE INDEX bookings_venue_start ON bookings(venue_id, start_at, end_at, tables);
