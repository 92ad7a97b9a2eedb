-- Matching as a host would (issue 14).
-- When a snapshot after the first put a check on the tables it is on (a bar tab moved to a
-- table): the time table-and-time matching judges it by.
ALTER TABLE sales ADD COLUMN placed_at BIGINT;
-- The guest named on the check (Lightspeed consumerRecord), for matching; personal data,
-- erased by retention like bookings' names.
ALTER TABLE sales ADD COLUMN guest_name TEXT;
-- For a table-and-time match: the table and time that decided it, and which time it was
-- ('opened' or 'placed'). A later snapshot keeps the match while its booking holds these.
ALTER TABLE sales ADD COLUMN matched_table TEXT;
ALTER TABLE sales ADD COLUMN matched_at BIGINT;
ALTER TABLE sales ADD COLUMN time_basis TEXT;
-- For an ambiguous sale: each candidate with the evidence for it, JSON
-- [{"booking_id": 1, "evidence": "..."}].
ALTER TABLE sales ADD COLUMN match_evidence TEXT;
CREATE INDEX sales_unmatched_placed ON sales(venue_id, placed_at)
    WHERE booking_id IS NULL AND placed_at IS NOT NULL;

-- The status a booking had before its sales first moved it (to seated or paid): when its
-- last live sale leaves, it goes back there.
ALTER TABLE bookings ADD COLUMN pre_sales_status TEXT;

-- What per-cover spend divides by: the booked covers ('booking') or the covers the POS
-- counted on the booking's checks ('pos').
ALTER TABLE venues ADD COLUMN covers_source TEXT NOT NULL DEFAULT 'booking';
