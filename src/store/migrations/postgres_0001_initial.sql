-- Sigil schema v1 (PostgreSQL). Times are Unix seconds.
CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY,
    der               BYTEA NOT NULL,
    subject           TEXT NOT NULL,
    sans              TEXT NOT NULL DEFAULT '',
    issuer            TEXT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    profile           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    revoked_at        BIGINT,
    revocation_reason INTEGER,
    transaction_id    TEXT NOT NULL,
    device_id         TEXT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX certificates_not_after ON certificates (not_after);
CREATE INDEX certificates_profile ON certificates (profile);

CREATE TABLE transactions (
    transaction_id TEXT PRIMARY KEY,
    profile        TEXT NOT NULL,
    key_sha256     TEXT NOT NULL,
    signer_sha256  TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'issued', 'rejected')),
    serial         TEXT UNIQUE REFERENCES certificates (serial),
    reason         TEXT,
    csr            BYTEA,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CHECK ((state = 'issued') = (serial IS NOT NULL))
);
CREATE INDEX transactions_pending ON transactions (state, created_at);

CREATE TABLE challenges (
    hash       TEXT PRIMARY KEY,
    profile    TEXT NOT NULL,
    bindings   TEXT NOT NULL DEFAULT '{}',
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_by    TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE ca_state (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
