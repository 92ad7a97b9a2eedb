-- Which events a replay of many re-ran: an event's history shows the replays that changed
-- it, not only the ones run on it alone (whose audit entry names it as its subject).
CREATE TABLE event_replays (
    event_id BIGINT NOT NULL,
    audit_id BIGINT NOT NULL,
    PRIMARY KEY (event_id, audit_id)
);
