-- Sigil schema v6 (PostgreSQL): the trust model.
-- Transactions are keyed by (transactionID, requester key, serial renewed) through `id`
-- (TransactionRecord::key; the migration step computes it for the rows already here), and are
-- reserved ('issuing') while their certificate is signed, so the CA key signs each once.
ALTER TABLE transactions ADD COLUMN id TEXT;
UPDATE transactions SET id = transaction_id;
ALTER TABLE transactions DROP CONSTRAINT transactions_pkey;
ALTER TABLE transactions ADD PRIMARY KEY (id);
ALTER TABLE transactions ADD COLUMN renews TEXT;
ALTER TABLE transactions ADD COLUMN challenge_id TEXT;
ALTER TABLE transactions ADD COLUMN reserved_until BIGINT;
ALTER TABLE transactions DROP CONSTRAINT transactions_state_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_state_check
    CHECK (state IN ('issuing', 'pending', 'issued', 'rejected'));
CREATE INDEX transactions_transaction_id ON transactions (transaction_id);

-- One-time challenges get a public id and their minter (the audit trail from a certificate to
-- the token that made it possible); a reservation claims one before the certificate is signed.
ALTER TABLE challenges ADD COLUMN id TEXT;
ALTER TABLE challenges ADD COLUMN created_by TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE challenges ADD COLUMN reserved_by TEXT;
ALTER TABLE challenges ADD COLUMN reserved_until BIGINT;
UPDATE challenges SET id = 'chl_' || substr(md5(random()::text || hash), 1, 16);
CREATE UNIQUE INDEX challenges_id ON challenges (id);

-- A certificate renews once.
ALTER TABLE certificates ADD COLUMN renewed_by TEXT;

-- Integration tokens carry a scope. Tokens made before keep working as they did.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT '{}';
UPDATE api_tokens SET scope = '{"profiles":["*"],"directories":["*"]}' WHERE role = 'mdm';

-- "The published CRL lacks revocations" marks, per issuer: set by a revocation, cleared by the
-- CRL that covers it.
CREATE TABLE crl_marks (
    issuer    TEXT PRIMARY KEY,
    revisions BIGINT NOT NULL,
    since     BIGINT NOT NULL
);
