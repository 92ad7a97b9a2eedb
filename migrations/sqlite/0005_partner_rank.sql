-- Where the last partner snapshot applied to a booking put it along its life (see
-- BookingSnapshot::rank): a later snapshot ranked below it is a late retry, changing nothing.
ALTER TABLE bookings ADD COLUMN partner_rank INTEGER;
