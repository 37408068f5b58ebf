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
-- Who holds a reservation (or an approval's claim): only the holder records or releases it.
ALTER TABLE transactions ADD COLUMN holder TEXT;
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
-- Nodes of the previous version still running during the upgrade insert without an id.
ALTER TABLE challenges ALTER COLUMN id SET DEFAULT 'chl_' || substr(md5(random()::text), 1, 16);
ALTER TABLE challenges ALTER COLUMN id SET NOT NULL;
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
    revisions BIGINT NOT NULL,
    covered   BIGINT NOT NULL DEFAULT 0,
    since     BIGINT NOT NULL
);
