-- Partners in the database (issue 17): created, changed and disabled through the API and the
-- pages, effective on every node within seconds; their secrets sealed at rest.

-- A partner's definition: the same keys as a `[[partners]]` table of the configuration file,
-- as JSON, without its secret (kept in partner_secrets). Every write bumps `version`.
CREATE TABLE partners (
    name       TEXT   PRIMARY KEY,
    definition TEXT   NOT NULL,
    enabled    BIGINT NOT NULL DEFAULT 1,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A partner's secrets: at most a few at once (current and next), each valid in a window, so
-- a partner switches keys with no failed delivery. `sealed` is XChaCha20-Poly1305 under the
-- key from the environment, bound to the partner and label.
CREATE TABLE partner_secrets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    partner     TEXT   NOT NULL REFERENCES partners(name) ON DELETE CASCADE,
    label       TEXT   NOT NULL,
    sealed      TEXT   NOT NULL,
    valid_from  BIGINT,
    valid_until BIGINT,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
CREATE INDEX partner_secrets_partner ON partner_secrets(partner);

-- One row: bumped by every partner write, polled by every node to reload.
CREATE TABLE partner_registry (
    id      BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO partner_registry (id, version) VALUES (1, 0);

-- Which of the partner's secrets verified an event (its label); none for the file's.
ALTER TABLE events ADD COLUMN secret_label TEXT;
