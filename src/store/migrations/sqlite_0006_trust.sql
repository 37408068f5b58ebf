-- Sigil schema v6 (SQLite): the trust model.
-- Transactions are keyed by (transactionID, requester key, serial renewed) through `id`
-- (TransactionRecord::key; the migration step computes it for the rows already here), and are
-- reserved ('issuing') while their certificate is signed, so the CA key signs each once.
CREATE TABLE transactions_v6 (
    id             TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    renews         TEXT,
    profile        TEXT NOT NULL,
    key_sha256     TEXT NOT NULL,
    signer_sha256  TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('issuing', 'pending', 'issued', 'rejected')),
    serial         TEXT UNIQUE REFERENCES certificates (serial),
    reason         TEXT,
    csr            BLOB,
    challenge_id   TEXT,
    reserved_until INTEGER,
    holder         TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    CHECK ((state = 'issued') = (serial IS NOT NULL))
);
INSERT INTO transactions_v6 (id, transaction_id, profile, key_sha256, signer_sha256, state,
                             serial, reason, csr, created_at, updated_at)
    SELECT transaction_id, transaction_id, profile, key_sha256, signer_sha256, state, serial,
           reason, csr, created_at, updated_at
    FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_v6 RENAME TO transactions;
CREATE INDEX transactions_pending ON transactions (state, created_at);
CREATE INDEX transactions_transaction_id ON transactions (transaction_id);

-- One-time challenges get a public id and their minter (the audit trail from a certificate to
-- the token that made it possible); a reservation claims one before the certificate is signed.
ALTER TABLE challenges ADD COLUMN id TEXT;
ALTER TABLE challenges ADD COLUMN created_by TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE challenges ADD COLUMN reserved_by TEXT;
ALTER TABLE challenges ADD COLUMN reserved_until INTEGER;
UPDATE challenges SET id = 'chl_' || lower(hex(randomblob(8)));
CREATE UNIQUE INDEX challenges_id ON challenges (id);

-- A certificate renews once.
ALTER TABLE certificates ADD COLUMN renewed_by TEXT;

-- Integration tokens carry a scope. Tokens made before keep working as they did.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT '{}';
UPDATE api_tokens SET scope = '{"profiles":["*"],"directories":["*"]}' WHERE role = 'mdm';

-- "The published CRL lacks revocations" marks, per issuer: set by a revocation, cleared by the
-- CRL that covers it.
-- `revisions` only grows; `covered` is what the last published CRL covers; `since` is when
-- the first revocation after `covered` was committed.
CREATE TABLE crl_marks (
    issuer    TEXT PRIMARY KEY,
    revisions INTEGER NOT NULL,
    covered   INTEGER NOT NULL DEFAULT 0,
    since     INTEGER NOT NULL
);
