-- Table history from late snapshots (issue 14).
-- The time of the first snapshot stored of a sale: when it was first seen on its tables.
-- A late, older snapshot that shows the check elsewhere before then moves its placement
-- time here (a bar tab moved to its table, a party moved, delivered out of order).
ALTER TABLE sales ADD COLUMN first_seen_at BIGINT;
-- When the check was first closed: when its party paid and left. A check reopened later
-- (a tip added, a correction) does not bring the party back to the table.
ALTER TABLE sales ADD COLUMN first_closed_at BIGINT;
UPDATE sales SET first_closed_at = closed_at WHERE state = 'closed';
