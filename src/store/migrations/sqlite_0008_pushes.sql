-- Deliveries to the MDM (issue: delivery to the device): one row per registration and
-- purpose (`deliver`, `withdraw`, `renew:<serial>`), so a push is queued once, retried with
-- backoff, and its state shown on the registration.
CREATE TABLE pushes (
    id              TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL,
    key             TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('deliver', 'withdraw', 'renew')),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_at         BIGINT NOT NULL,
    message         TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (registration_id, key)
);
CREATE INDEX pushes_due ON pushes (state, next_at);
