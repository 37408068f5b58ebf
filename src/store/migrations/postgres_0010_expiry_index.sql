-- Sigil schema v10 (PostgreSQL): valid certificates ending per profile counted from an index
-- alone (the console's expiry chart, the expiry gauge, the soonest-ending listing), and one
-- index fewer to write per issuance: every query on notAfter also names a status or an issuer.
-- Certificates stored per day and profile (the console's issuance chart) from an index alone
-- too: (created_at, profile) serves everything (created_at) did.
DROP INDEX certificates_status_not_after;
DROP INDEX certificates_not_after;
CREATE INDEX certificates_status_not_after_profile ON certificates (status, not_after, profile);
DROP INDEX certificates_created_at;
CREATE INDEX certificates_created_at_profile ON certificates (created_at, profile);
