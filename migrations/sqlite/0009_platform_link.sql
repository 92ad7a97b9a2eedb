-- The platform link (issue 16): the diary's changes as messages, in commit order, and the
-- webhook subscriptions that receive them.

-- Every change a write made to a diary, rendered as the message a platform receives. Written
-- in the transaction that made the change (a transactional outbox), so a message exists
-- exactly when its change was committed.
CREATE TABLE changes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The position in commit order: the change feed's cursor and the message's id (the
    -- row's own id, never reused: AUTOINCREMENT).
    seq          BIGINT,
    type         TEXT   NOT NULL,
    venue_id     BIGINT NOT NULL,
    booking_id   BIGINT,
    sale_id      BIGINT,
    -- Messages with one key are delivered in the order they were made: the booking's, else
    -- the sale's, else the venue's.
    ordering_key TEXT   NOT NULL,
    event_id     BIGINT,
    payload      TEXT   NOT NULL,
    at           BIGINT NOT NULL
);
CREATE UNIQUE INDEX changes_seq ON changes(seq);
CREATE INDEX changes_venue_seq ON changes(venue_id, seq);
CREATE INDEX changes_at ON changes(at);
-- One writer: the order rows are inserted in is the order they commit in.
CREATE TRIGGER changes_stamp AFTER INSERT ON changes
BEGIN
    UPDATE changes SET seq = NEW.id WHERE id = NEW.id;
END;

-- Where a platform wants the messages pushed (Standard Webhooks).
CREATE TABLE webhook_subscriptions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT   NOT NULL,
    -- `whsec_` and the base64 key; never returned after creation.
    secret          TEXT   NOT NULL,
    description     TEXT,
    -- JSON arrays; empty means every type, every venue.
    event_types     TEXT   NOT NULL,
    venues          TEXT   NOT NULL,
    enabled         BIGINT NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    -- Since when every attempt failed (null while the receiver answers).
    failing_since   BIGINT,
    last_success_at BIGINT,
    -- The feed position up to which this subscription's messages have been queued.
    queued_to       BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- One change's delivery to one subscription.
CREATE TABLE webhook_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id BIGINT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    change_seq      BIGINT NOT NULL,
    ordering_key    TEXT   NOT NULL,
    type            TEXT   NOT NULL,
    -- pending, delivered, failed (gave up after the retry period).
    state           TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- A node sending it holds it until then; past it another node may send it again.
    claimed_until   BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    UNIQUE (subscription_id, change_seq)
);
CREATE INDEX webhook_messages_due ON webhook_messages(next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_messages_order ON webhook_messages(subscription_id, ordering_key, change_seq)
    WHERE state = 'pending';
CREATE INDEX webhook_messages_waiting ON webhook_messages(change_seq) WHERE state = 'pending';

-- The spend last announced for a booking (`total|paid|currency`), so a change that leaves it
-- as it was sends nothing.
ALTER TABLE bookings ADD COLUMN notified_spend TEXT;
CREATE INDEX bookings_venue_updated ON bookings(venue_id, updated_at, id);

-- A partner that usually sends events for a venue at this hour of the week and has been
-- silent too long (`partner.silent`); `silent_since` is null again once events resume.
CREATE TABLE partner_silence (
    partner       TEXT   NOT NULL,
    venue_id      BIGINT NOT NULL,
    silent_since  BIGINT,
    last_event_at BIGINT NOT NULL,
    cleared_at    BIGINT,
    PRIMARY KEY (partner, venue_id)
);
