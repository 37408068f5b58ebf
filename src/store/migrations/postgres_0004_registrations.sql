-- Sigil schema v4 (PostgreSQL): registrations of derived credentials, and the `user` role for
-- self-service tokens.
CREATE TABLE registrations (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    credential      TEXT NOT NULL,
    state           TEXT NOT NULL
        CHECK (state IN ('open', 'requested', 'approved', 'rejected', 'issued', 'expired')),
    devices         TEXT NOT NULL DEFAULT '[]',
    directory_error TEXT,
    device_id       TEXT,
    device          TEXT,
    subject         TEXT,
    sans            TEXT NOT NULL DEFAULT '[]',
    created_by      TEXT NOT NULL,
    requested_by    TEXT,
    decided_by      TEXT,
    comment         TEXT,
    challenge_hash  TEXT UNIQUE,
    serial          TEXT REFERENCES certificates (serial),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    CHECK ((state = 'issued') = (serial IS NOT NULL))
);
CREATE INDEX registrations_email ON registrations (email);
CREATE INDEX registrations_expiry ON registrations (state, expires_at);

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'officer', 'auditor', 'mdm', 'user'));
