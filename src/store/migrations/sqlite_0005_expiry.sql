-- Sigil schema v5 (SQLite): when the expiry webhook announced a certificate.
ALTER TABLE certificates ADD COLUMN expiry_notified_at INTEGER;
CREATE INDEX certificates_status_not_after ON certificates (status, not_after);
