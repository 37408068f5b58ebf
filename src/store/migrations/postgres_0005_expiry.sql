-- Sigil schema v5 (PostgreSQL): when the expiry webhook announced a certificate.
ALTER TABLE certificates ADD COLUMN expiry_notified_at BIGINT;
CREATE INDEX certificates_status_not_after ON certificates (status, not_after);
