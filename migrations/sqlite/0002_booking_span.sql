-- The longest booking a venue has had, so a table-and-time lookup can bound its scan from
-- below (start >= opened - longest) and stay cheap however long the diary's history grows.
ALTER TABLE venues ADD COLUMN longest_booking_ms INTEGER NOT NULL DEFAULT 0;
UPDATE venues SET longest_booking_ms = COALESCE(
    (SELECT MAX(end_at - start_at) FROM bookings WHERE bookings.venue_id = venues.id), 0);
