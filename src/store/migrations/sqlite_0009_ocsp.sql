-- Pre-produced OCSP answers (RFC 5019's lightweight profile; issue: performance at fleet
-- scale): one signed single-certificate answer per certificate, produced ahead of time by the
-- delegated responder and shared by every node. `status` and `revoked_at` are what the
-- answer states: an answer that no longer states its certificate's status is never served.
CREATE TABLE ocsp_responses (
    serial      TEXT PRIMARY KEY REFERENCES certificates (serial),
    status      TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
    revoked_at  INTEGER,
    der         BLOB NOT NULL,
    produced_at INTEGER NOT NULL,
    next_update INTEGER NOT NULL
);
CREATE INDEX certificates_issuer_not_after ON certificates (issuer, not_after);
-- The producer's look at certificates issued since its last round.
CREATE INDEX certificates_created_at ON certificates (created_at);
-- A device's certificates (revoking a lost device; the officer's search).
CREATE INDEX certificates_device_id ON certificates (device_id);
-- Listings by status, newest first (the API and console searches).
CREATE INDEX certificates_status_created ON certificates (status, created_at);
