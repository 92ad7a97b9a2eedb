-- diarysync schema, SQLite dialect. Times are UTC epoch milliseconds; money is decimal text,
-- exactly as the partner wrote it; flags are 0/1 integers.

CREATE TABLE venues (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL,
    timezone             TEXT    NOT NULL,
    currency             TEXT,
    tolerance_before_min INTEGER NOT NULL DEFAULT 30,
    tolerance_after_min  INTEGER NOT NULL DEFAULT 60,
    -- JSON object: normalised POS table name -> normalised diary table name.
    table_aliases        TEXT    NOT NULL DEFAULT '{}',
    -- 1: an unmatched sale on a table creates a walk-in booking.
    walk_ins             INTEGER NOT NULL DEFAULT 0,
    -- JSON object: a booking platform's SKU or product id -> normalised diary table name.
    sku_tables           TEXT    NOT NULL DEFAULT '{}',
    created_at           INTEGER NOT NULL
);

CREATE TABLE partner_locations (
    id          INTEGER PRIMARY KEY,
    venue_id    INTEGER NOT NULL REFERENCES venues(id),
    partner     TEXT    NOT NULL,
    location_id TEXT    NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (partner, location_id)
);
CREATE INDEX partner_locations_venue ON partner_locations(venue_id);

-- Guest profiles, deduplicated per venue by e-mail or phone. Personal data.
CREATE TABLE guests (
    id         INTEGER PRIMARY KEY,
    venue_id   INTEGER NOT NULL REFERENCES venues(id),
    name       TEXT,
    email      TEXT,
    phone      TEXT,
    email_key  TEXT,
    phone_key  TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX guests_email ON guests(venue_id, email_key);
CREATE INDEX guests_phone ON guests(venue_id, phone_key);

CREATE TABLE bookings (
    id               INTEGER PRIMARY KEY,
    venue_id         INTEGER NOT NULL REFERENCES venues(id),
    reference        TEXT,
    start_at         INTEGER NOT NULL,
    end_at           INTEGER NOT NULL,
    covers           INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL,
    customer_name    TEXT,
    customer_email   TEXT,
    customer_phone   TEXT,
    guest_id         INTEGER REFERENCES guests(id),
    -- admin, walk_in, or the partner that created it.
    source           TEXT    NOT NULL DEFAULT 'admin',
    -- The last status a partner reported in its own words (e.g. Lightspeed SEATED).
    partner_status   TEXT,
    -- For bookings a booking platform owns: its key (unique per partner and venue), the
    -- money it reports, its update time and a fingerprint of its last snapshot.
    external_key     TEXT,
    total            TEXT,
    paid             TEXT,
    currency         TEXT,
    partner_version  INTEGER,
    fingerprint      TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (venue_id, reference)
);
CREATE INDEX bookings_venue_start ON bookings(venue_id, start_at);
CREATE INDEX bookings_guest ON bookings(guest_id);
CREATE UNIQUE INDEX bookings_external ON bookings(venue_id, source, external_key);

-- Payments and refunds booking platforms took, once per transaction; linked to their
-- booking by reference, so a payment that arrives first finds its booking later.
CREATE TABLE platform_payments (
    id                INTEGER PRIMARY KEY,
    venue_id          INTEGER NOT NULL REFERENCES venues(id),
    partner           TEXT    NOT NULL,
    booking_reference TEXT    NOT NULL,
    transaction_id    TEXT    NOT NULL,
    amount            TEXT    NOT NULL,
    refund            INTEGER NOT NULL,
    at                INTEGER,
    event_id          INTEGER NOT NULL,
    UNIQUE (venue_id, partner, transaction_id)
);
CREATE INDEX platform_payments_booking ON platform_payments(venue_id, partner, booking_reference);

CREATE TABLE booking_tables (
    booking_id INTEGER NOT NULL REFERENCES bookings(id),
    position   INTEGER NOT NULL,
    table_key  TEXT    NOT NULL,
    PRIMARY KEY (booking_id, position)
);

CREATE TABLE booking_transitions (
    id          INTEGER PRIMARY KEY,
    booking_id  INTEGER NOT NULL REFERENCES bookings(id),
    from_status TEXT    NOT NULL,
    to_status   TEXT    NOT NULL,
    cause       TEXT    NOT NULL,
    event_id    INTEGER,
    at          INTEGER NOT NULL
);
CREATE INDEX booking_transitions_booking ON booking_transitions(booking_id);

CREATE TABLE sales (
    id                 INTEGER PRIMARY KEY,
    venue_id           INTEGER NOT NULL REFERENCES venues(id),
    partner            TEXT    NOT NULL,
    external_id        TEXT    NOT NULL,
    number             TEXT,
    kind               TEXT    NOT NULL,
    origin_external_id TEXT,
    state              TEXT    NOT NULL,
    opened_at          INTEGER NOT NULL,
    closed_at          INTEGER,
    version            INTEGER NOT NULL,
    currency           TEXT,
    total              TEXT    NOT NULL,
    paid               TEXT    NOT NULL,
    tax                TEXT    NOT NULL,
    net                TEXT    NOT NULL,
    tip                TEXT    NOT NULL,
    service_charge     TEXT    NOT NULL,
    discount           TEXT    NOT NULL,
    deposit            TEXT    NOT NULL,
    covers             INTEGER,
    tables             TEXT    NOT NULL,
    booking_refs       TEXT    NOT NULL,
    booking_id         INTEGER REFERENCES bookings(id),
    match_rule         TEXT,
    match_reason       TEXT,
    match_candidates   TEXT,
    last_event_id      INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    UNIQUE (partner, venue_id, external_id)
);
CREATE INDEX sales_booking ON sales(booking_id);
CREATE INDEX sales_origin ON sales(venue_id, partner, origin_external_id);
CREATE INDEX sales_unmatched ON sales(venue_id, opened_at) WHERE booking_id IS NULL;

CREATE TABLE sale_lines (
    sale_id      INTEGER NOT NULL REFERENCES sales(id),
    position     INTEGER NOT NULL,
    external_id  TEXT,
    description  TEXT    NOT NULL,
    quantity     TEXT    NOT NULL,
    unit_amount  TEXT    NOT NULL,
    amount       TEXT    NOT NULL,
    tax_rate     TEXT,
    tax_included INTEGER,
    PRIMARY KEY (sale_id, position)
);

CREATE TABLE sale_payments (
    sale_id     INTEGER NOT NULL REFERENCES sales(id),
    position    INTEGER NOT NULL,
    external_id TEXT,
    method      TEXT,
    amount      TEXT    NOT NULL,
    tip         TEXT    NOT NULL,
    paid_at     INTEGER,
    PRIMARY KEY (sale_id, position)
);

-- Every request a partner sent, stored before it is processed, with what became of it.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    partner      TEXT    NOT NULL,
    route        TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    query        TEXT,
    headers      TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    body_sha256  TEXT    NOT NULL,
    handler      TEXT,
    handler_version TEXT,
    replays      INTEGER NOT NULL DEFAULT 0,
    -- Pending events (details to fetch): tries so far and when to try next.
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    outcome      TEXT    NOT NULL,
    reason       TEXT,
    detail       TEXT,
    venue_id     INTEGER,
    sale_id      INTEGER,
    processed_at INTEGER
);
CREATE INDEX events_partner_outcome ON events(partner, outcome, id);
CREATE INDEX events_received ON events(received_at);
CREATE INDEX events_due ON events(outcome, next_attempt_at);
