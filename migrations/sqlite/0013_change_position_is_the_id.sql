-- A change's feed position on SQLite is its row's own id: one writer hands ids out in commit
-- order, and AUTOINCREMENT never reuses one. It was a copy of the id written by a trigger,
-- which rewrote every message (its payload included) just after inserting it: a second write
-- per message in the writer's hottest path. `seq` is now a virtual column of the id, so its
-- index and every query stay as they were. (PostgreSQL keeps its trigger: its transactions
-- commit in another order than they take ids.)
DROP TRIGGER changes_stamp;

CREATE TABLE changes_by_id (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    seq          BIGINT GENERATED ALWAYS AS (id) VIRTUAL,
    type         TEXT   NOT NULL,
    venue_id     BIGINT NOT NULL,
    booking_id   BIGINT,
    sale_id      BIGINT,
    ordering_key TEXT   NOT NULL,
    event_id     BIGINT,
    payload      TEXT   NOT NULL,
    at           BIGINT NOT NULL
);
INSERT INTO changes_by_id (id, type, venue_id, booking_id, sale_id, ordering_key, event_id,
        payload, at)
    SELECT id, type, venue_id, booking_id, sale_id, ordering_key, event_id, payload, at
    FROM changes ORDER BY id;
-- Positions already handed out stay handed out, even those of messages purged since.
DELETE FROM sqlite_sequence WHERE name = 'changes_by_id';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'changes_by_id', seq FROM sqlite_sequence WHERE name = 'changes';
DROP TABLE changes;
ALTER TABLE changes_by_id RENAME TO changes;
CREATE UNIQUE INDEX changes_seq ON changes(seq);
CREATE INDEX changes_venue_seq ON changes(venue_id, seq);
CREATE INDEX changes_at ON changes(at);
