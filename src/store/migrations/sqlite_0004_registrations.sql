-- Sigil schema v4 (SQLite): registrations of derived credentials, and the `user` role for
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
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    CHECK ((state = 'issued') = (serial IS NOT NULL))
);
CREATE INDEX registrations_email ON registrations (email);
CREATE INDEX registrations_expiry ON registrations (state, expires_at);

-- SQLite cannot change a CHECK constraint: the token table is rebuilt with the new role.
CREATE TABLE api_tokens_v4 (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'officer', 'auditor', 'mdm', 'user')),
    hash         TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
INSERT INTO api_tokens_v4 (id, name, role, hash, created_at, expires_at, revoked_at, last_used_at)
    SELECT id, name, role, hash, created_at, expires_at, revoked_at, last_used_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v4 RENAME TO api_tokens;
