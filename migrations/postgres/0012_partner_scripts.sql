-- Stored partners' scripts (issue 17): edited on the pages, tried on stored events, saved as
-- a new version each time. A script partner runs its newest version; every event records
-- the content hash (`handler_version`) of the version that mapped it.
CREATE TABLE partner_scripts (
    partner    TEXT   NOT NULL REFERENCES partners(name) ON DELETE CASCADE,
    number     BIGINT NOT NULL,
    source     TEXT   NOT NULL,
    -- The content hash events record as their handler_version.
    version    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    -- Who saved it (the actor's name as the audit trail gives it).
    created_by TEXT   NOT NULL,
    PRIMARY KEY (partner, number)
);

-- Which partner an audit entry is about, so a partner's history is one indexed read
-- (`GET /api/v1/audit?partner=`); entries about other subjects leave it empty.
ALTER TABLE audit_log ADD COLUMN subject_name TEXT;
CREATE INDEX audit_log_subject_name ON audit_log(subject_name, id) WHERE subject_name IS NOT NULL;
UPDATE audit_log SET subject_name = COALESCE(after::jsonb ->> 'name', before::jsonb ->> 'name')
 WHERE subject_type = 'partner';
UPDATE audit_log SET subject_name = after::jsonb #>> '{filter,partner}'
 WHERE subject_type = 'replay';
