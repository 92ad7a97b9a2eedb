-- Operators (issue 17): people with their own accounts and roles, their personal API tokens
-- and sessions, and the audit trail of what they did by hand.

-- An operator. `email` is stored lowercased: one account per address.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT   NOT NULL,
    email         TEXT   NOT NULL UNIQUE,
    role          TEXT   NOT NULL CHECK (role IN ('admin', 'integrator', 'venue_manager')),
    -- Argon2id in PHC string format; never logged, never returned.
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT,
    disabled_at   BIGINT
);

-- The venues a venue role may see (every other venue's data answers 404).
CREATE TABLE user_venues (
    user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    venue_id BIGINT NOT NULL REFERENCES venues(id),
    PRIMARY KEY (user_id, venue_id)
);

-- Personal API tokens: the SHA-256 of the token, never the token (it is shown once).
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    -- The first characters, so a person can tell their tokens apart.
    prefix       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

-- Server-side sessions of the pages (tower-sessions' records), keyed by the SHA-256 of the
-- session id the cookie carries. `user_id` lets a user's sessions end together.
CREATE TABLE operator_sessions (
    id_hash    TEXT   PRIMARY KEY,
    user_id    BIGINT,
    data       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX operator_sessions_user ON operator_sessions(user_id);
CREATE INDEX operator_sessions_expires ON operator_sessions(expires_at);

-- Every manual action: who, when, what, and the subject before and after (JSON, without
-- guests' personal data).
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            BIGINT NOT NULL,
    actor_user_id BIGINT,
    actor         TEXT   NOT NULL,
    -- How the actor was signed in: `session`, `token <id>`, `admin token`, `command line`.
    actor_via     TEXT,
    action        TEXT   NOT NULL,
    venue_id      BIGINT,
    subject_type  TEXT   NOT NULL,
    subject_id    BIGINT,
    before        TEXT,
    after         TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_venue ON audit_log(venue_id, id);
CREATE INDEX audit_log_actor ON audit_log(actor_user_id, id);
CREATE INDEX audit_log_subject ON audit_log(subject_type, subject_id, id);

-- Login attempts per account (`account:<e-mail>`, `account:admin-token`) and per address
-- (`address:<ip>`), counted before the password is checked and shared by every node: past a
-- limit, logins are refused until the key has been quiet for the window.
CREATE TABLE login_attempts (
    key      TEXT   PRIMARY KEY,
    attempts BIGINT NOT NULL,
    last_at  BIGINT NOT NULL
);
