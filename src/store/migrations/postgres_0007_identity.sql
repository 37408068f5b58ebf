-- People, sessions and token owners (issue: people, not token names).

-- People who signed in (through the identity provider or a PIV card): an actor in the audit
-- log (`oidc:<issuer>#<sub>`, `piv:<upn>`) names one, and the two-person rule compares them.
CREATE TABLE people (
    id         TEXT PRIMARY KEY,
    email      TEXT,
    name       TEXT NOT NULL,
    roles      TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
CREATE INDEX people_email ON people (email);

-- Browser sessions and sign-ins in progress, server-side: the browser holds a random value,
-- stored here hashed.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('session', 'login')),
    person     TEXT,
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- A token belongs to the person who made it (or is the break-glass token of `sigil init`);
-- a token that grants power waits for a second admin.
ALTER TABLE api_tokens ADD COLUMN owner TEXT;
ALTER TABLE api_tokens ADD COLUMN awaiting_approval BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE api_tokens ADD COLUMN approved_by TEXT;
-- Tokens made before: the admin token of `sigil init` is the break-glass token.
UPDATE api_tokens SET owner = 'break-glass' WHERE name = 'initial-admin' AND role = 'admin';
